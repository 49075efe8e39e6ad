//! `stowage check-media`: the "nothing lost" audit. Lists references whose object is missing
//! (dangling) and objects under the media prefixes that nothing references (orphans); exits
//! non-zero when anything is dangling.

use crate::config::Config;
use crate::jobs::staging::{self, MediaStorages};
use crate::services::Services;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let state = Services::build(&config).await?;
    state.check_migrated().await?;
    let references = state.db.media_references().await?;
    let pending = state.db.pending_direct_upload_keys().await?;
    let storages = MediaStorages {
        public: state.storages.public.clone(),
        private: state.storages.private.clone(),
    };
    let audit = staging::check_media(&references, &pending, &storages).await?;
    state.db.close().await;
    for r in &audit.dangling {
        println!(
            "dangling: {} row {} {} -> {} (missing)",
            r.table, r.row_id, r.field, r.key
        );
    }
    for (storage, key) in &audit.orphans {
        println!("orphan: {storage} {key} (referenced by no row)");
    }
    println!(
        "{} references checked: {} dangling, {} orphans",
        references.len(),
        audit.dangling.len(),
        audit.orphans.len()
    );
    if !audit.dangling.is_empty() {
        anyhow::bail!(
            "{} references point at missing objects",
            audit.dangling.len()
        );
    }
    Ok(())
}
