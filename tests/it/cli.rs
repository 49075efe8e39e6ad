//! The `stowage` binary's commands.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_stowage");

#[test]
fn help_lists_every_command() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for command in [
        "serve",
        "migrate",
        "createuser",
        "seed-demo",
        "collectstatic",
        "changepassword",
        "mark-staging",
        "make-staging",
        "copy-media",
        "check-media",
        "doctor",
        "downloads",
    ] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
}

#[test]
fn createuser_reads_the_password_from_stdin_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    let migrate = Command::new(BIN)
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{migrate:?}");

    // A command fed `password` on standard input.
    let with_password = |args: &[&str], password: &str| {
        let mut child = Command::new(BIN)
            .args(args)
            .env("DATABASE_URL", &url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let create = |name: &str, password: &str| {
        with_password(
            &["createuser", name, "--staff", "--password-stdin"],
            password,
        )
    };
    let out = create("grace", "a long enough password");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Created staff member \"grace\""));

    let again = create("GRACE", "a long enough password");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let weak = create("hopper", "short");
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 8"));
    let guessable = create("hopper", "hopper12345");
    assert!(!guessable.status.success());
    assert!(String::from_utf8_lossy(&guessable.stderr).contains("too easy to guess"));

    // changepassword: the same rules; the new password works, the old one does not.
    let change = |name: &str, password: &str| {
        with_password(&["changepassword", name, "--password-stdin"], password)
    };
    let nobody = change("nobody", "quartz ferret lantern");
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("no member is named"));
    let weak = change("grace", "password1");
    assert!(String::from_utf8_lossy(&weak.stderr).contains("too easy to guess"));
    let changed = change("Grace", "quartz ferret lantern");
    assert!(changed.status.success(), "{changed:?}");
    assert!(String::from_utf8_lossy(&changed.stdout).contains("every session of theirs has ended"));
    let verifies = |password: &'static str| {
        let url = url.clone();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let db = stowage::db::Database::connect(&url, 1).await.unwrap();
                let user = db.find_user_by_username("grace").await.unwrap().unwrap();
                assert_eq!(user.session_epoch, 1, "every session of theirs ends");
                stowage::auth::PasswordHasher::new(1)
                    .verify(password.into(), user.password_hash)
                    .await
                    .unwrap()
            })
    };
    assert!(verifies("quartz ferret lantern"));
    assert!(!verifies("a long enough password"));
}

#[test]
fn a_bad_variable_stops_serve_with_a_message_naming_it() {
    let out = Command::new(BIN)
        .arg("serve")
        .env("PORT", "not-a-port")
        .env("SECRET_KEY", "x".repeat(40))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PORT"),
        "{out:?}"
    );

    let out = Command::new(BIN)
        .arg("serve")
        .env("DEFAULT_FILE_STORAGE", "s3")
        .env("SECRET_KEY", "x".repeat(40))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AWS_"),
        "{out:?}"
    );
}

#[test]
fn seed_demo_creates_members_with_avatars_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let media = dir.path().join("media");
    let seed = |members: &str| {
        Command::new(BIN)
            .args(["seed-demo", "--members", members, "--resumes", "50"])
            .env("DATABASE_URL", &url)
            .env("MEDIA_ROOT", &media)
            .env("SECRET_KEY", "s".repeat(40))
            .output()
            .unwrap()
    };
    // Only `migrate` migrates: seeding an empty database says what to run.
    let out = seed("4");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run `stowage migrate` first"),
        "{out:?}"
    );
    let migrated = Command::new(BIN)
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    let out = seed("4");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Created 4 demo members"), "{stdout}");
    let count = |dir: &str| {
        std::fs::read_dir(media.join(dir))
            .map(|d| {
                d.flat_map(|e| std::fs::read_dir(e.unwrap().path()).unwrap())
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(count("avatars"), 4);
    assert_eq!(count("private/resumes"), 2, "half of them have a resume");
    // Running it again creates nothing twice.
    let again = seed("4");
    assert!(String::from_utf8_lossy(&again.stdout).contains("Created 0 demo members"));
    assert_eq!(count("avatars"), 4);
}

/// `app.json` and `.env.example` name exactly the variables stowage reads
/// (`config::VARIABLES`; a unit test beside it holds the README's tables to the same list).
#[test]
fn app_json_and_env_example_name_only_variables_stowage_reads() {
    use stowage::config::VARIABLES;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let app: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("app.json")).unwrap()).unwrap();
    let from_app: Vec<String> = app["env"].as_object().unwrap().keys().cloned().collect();
    let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
    let from_example: Vec<String> = example
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.to_owned()))
        .collect();
    assert!(from_app.len() > 30);
    for name in from_app.iter().chain(&from_example) {
        assert!(
            VARIABLES.contains(&name.as_str()),
            "{name} is documented but never read"
        );
    }
    for name in VARIABLES {
        assert!(
            from_example.iter().any(|n| n == name),
            "{name} is read but not in .env.example"
        );
    }
}

#[test]
fn procfile_heroku_yml_and_app_json_agree_on_processes_and_release() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap();
    let procfile: std::collections::BTreeMap<String, String> = read("Procfile")
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(name, command)| (name.trim().to_owned(), command.trim().to_owned()))
        .collect();
    // heroku.yml, read as the few lines it is: `run:` processes, the release command's last
    // word list entry (`/bin/sh -c "…"`), the Dockerfile it builds.
    let heroku = read("heroku.yml");
    let section = |name: &str| -> Vec<String> {
        heroku
            .lines()
            .skip_while(|l| *l != format!("{name}:"))
            .skip(1)
            .take_while(|l| l.starts_with(' '))
            .map(|l| l.trim().to_owned())
            .collect()
    };
    let run: std::collections::BTreeMap<String, String> = section("run")
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(name, command)| (name.trim().to_owned(), command.trim().to_owned()))
        .collect();
    let release = section("release");
    let shell: Vec<&str> = release
        .iter()
        .filter_map(|l| l.strip_prefix("- "))
        .collect();
    assert_eq!(shell[..2], ["/bin/sh", "-c"], "{release:?}");
    assert_eq!(Some(shell[2]), procfile.get("release").map(String::as_str));
    assert!(section("build").contains(&"web: Dockerfile".to_owned()));
    assert!(root.join("Dockerfile").exists());
    let mut processes = procfile.clone();
    processes.remove("release");
    assert_eq!(run, processes, "heroku.yml runs what the Procfile runs");
    let app: serde_json::Value = serde_json::from_str(&read("app.json")).unwrap();
    assert_eq!(app["stack"], "container", "app.json deploys heroku.yml");
    for process in app["formation"].as_object().unwrap().keys() {
        assert!(run.contains_key(process), "app.json scales {process}");
    }
    // The image's default command is the web process too.
    assert!(read("Dockerfile").contains(r#"CMD ["stowage", "serve"]"#));
    assert_eq!(run["web"], "stowage serve");
}
