//! `stowage doctor`: checks every configured storage and key the way the app will use them,
//! and the database; one line per check with ✓ or ✗, the fix under each ✗, and a non-zero
//! exit when anything failed. See [`crate::jobs::doctor`].

use crate::config::{Config, LiveConfig};
use crate::jobs::doctor;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The site's origin, as browsers reach it (https://your-site.example): the direct-upload
    /// bucket's CORS rule must admit it. Default: `SITE_URL`.
    #[arg(long, value_name = "URL")]
    origin: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let live = LiveConfig::from_env()?;
    let origin = args.origin.or_else(|| config.server.site_url.clone());
    let checks = doctor::diagnose(&config, Some(&live), origin.as_deref()).await;
    for check in &checks {
        println!("{} {}", if check.ok { "✓" } else { "✗" }, check.what);
        if let Some(fix) = &check.fix {
            for line in fix.lines() {
                println!("    {line}");
            }
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    println!(
        "{} checks: {} passed, {failed} failed",
        checks.len(),
        checks.len() - failed
    );
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}
