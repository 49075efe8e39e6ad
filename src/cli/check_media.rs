//! `stowage check-media`: the "nothing lost" audit. Lists references whose object is missing
//! (dangling), objects under the media prefixes that nothing references (orphans) and
//! objects of deleted accounts still waiting to be deleted; exits non-zero when anything is
//! dangling. With `--verify`, also reads every referenced object
//! and compares its SHA-256 with the one recorded when it was stored; exits non-zero when one
//! differs.

use crate::config::Config;
use crate::jobs::staging::{self, MediaStorages};
use crate::jobs::verify::{self, Verdict};
use crate::services::Services;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read every referenced object whole and compare its SHA-256 with the recorded one.
    #[arg(long)]
    verify: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let state = Services::build(&config).await?;
    state.check_migrated().await?;
    let references = crate::media::references(&state.db).await?;
    let direct_uploads = state.db.pending_direct_upload_keys().await?;
    let deletions: Vec<(bool, String)> = state
        .db
        .pending_deletions()
        .await?
        .into_iter()
        .map(|d| (d.is_private(), d.object_key))
        .collect();
    let storages = MediaStorages {
        public: state.storages.public.clone(),
        private: state.storages.private.clone(),
    };
    let expected = staging::Expected {
        direct_uploads: &direct_uploads,
        deletions: &deletions,
    };
    let audit = staging::check_media(&references, &expected, &storages).await?;
    let verdicts = if args.verify {
        Some(verify::verify_media(&references, &storages).await?)
    } else {
        None
    };
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
    for (storage, key) in &audit.pending_deletion {
        println!("pending deletion: {storage} {key} (of a deleted account; retried by serve)");
    }
    println!(
        "{} references checked: {} dangling, {} orphans, {} pending deletion",
        references.len(),
        audit.dangling.len(),
        audit.orphans.len(),
        audit.pending_deletion.len()
    );
    let mut differing = 0;
    if let Some(verdicts) = verdicts {
        let (mut intact, mut unrecorded) = (0, 0);
        for (r, verdict) in &verdicts {
            match verdict {
                Verdict::Intact => intact += 1,
                Verdict::Unrecorded => unrecorded += 1,
                Verdict::Missing => {}
                Verdict::Differs { recorded, stored } => {
                    differing += 1;
                    println!(
                        "differs: {} row {} {} -> {} (sha256 recorded {recorded}, stored {stored})",
                        r.table, r.row_id, r.field, r.key
                    );
                }
            }
        }
        println!(
            "{} objects verified: {intact} intact, {differing} differ, {unrecorded} with no recorded digest",
            verdicts.len()
        );
    }
    if !audit.dangling.is_empty() {
        anyhow::bail!(
            "{} references point at missing objects",
            audit.dangling.len()
        );
    }
    if differing > 0 {
        anyhow::bail!("{differing} objects differ from what was stored");
    }
    Ok(())
}
