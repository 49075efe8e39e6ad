//! `stowage seed-demo [--members N]`: demo members with avatars and resumes, so a first run
//! shows a living site.

mod demo;

use anyhow::Context;

use crate::auth::hash_password;
use crate::config::Config;
use crate::db::DbError;
use crate::media;
use crate::services::Services;
use crate::slots::Slots;
use crate::storage::Storages;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many demo members to create.
    #[arg(long, default_value_t = 12)]
    pub members: usize,
    /// The share of demo members (percent) that get a resume.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub resumes: u8,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let services = Services::build(&config).await?;
    services.check_migrated().await?;
    let Services { db, storages } = services;
    let (db, storages): (_, &Storages) = (&db, &storages);
    let avatar_slots = Slots::new(config.security.avatar_processing_concurrency);
    // One password for every demo member, shown once.
    let password = hex::encode(rand::random::<[u8; 6]>());
    let hash = hash_password(password.clone()).await?;
    let (mut created, mut skipped) = (0, 0);
    for n in 1..=args.members {
        let username = format!("demo{n}");
        let name = demo::demo_name(n);
        let user = match db.create_user(&username, &hash, false, &name).await {
            Ok(user) => user,
            Err(DbError::Conflict(_)) => {
                skipped += 1;
                continue;
            }
            Err(e) => return Err(e).context("creating a demo member"),
        };
        let profile = db
            .find_profile_of_user(user.id)
            .await?
            .context("the new member has a profile")?;
        let avatar = demo::avatar_png(n);
        media::store_avatar(db, storages, &avatar_slots, profile.id, avatar, u64::MAX)
            .await
            .with_context(|| format!("storing {username}'s avatar"))?;
        if n * usize::from(args.resumes) / 100 != (n - 1) * usize::from(args.resumes) / 100 {
            let pdf = bytes::Bytes::from(demo::resume_pdf(&name));
            let body = futures_util::stream::iter([Ok::<_, std::io::Error>(pdf)]);
            let filename = format!("{name} CV.pdf");
            media::store_resume(db, storages, profile.id, body, &filename, u64::MAX)
                .await
                .with_context(|| format!("storing {username}'s resume"))?;
        }
        created += 1;
    }
    db.close().await;
    println!(
        "Created {created} demo members (demo1…demo{}), {skipped} already there.",
        args.members
    );
    if created > 0 {
        println!("Their password: {password}");
    }
    Ok(())
}
