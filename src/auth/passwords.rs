//! Password hashing and the rules a new password must meet.
//!
//! Hashes are argon2id with the default parameters of the `argon2` crate 0.5, which are
//! OWASP's recommended minimum: m = 19 MiB (19,456 KiB), t = 2 passes, p = 1 lane, a 16-byte
//! salt and a 32-byte output. One hash or check costs about 19 MiB of memory and, on one
//! core of the machines stowage is tested on, about 30 ms of CPU (see `bench/login-flood`).
//! What keeps that from becoming a denial of service is [`PasswordHasher`]: at most
//! `PASSWORD_HASH_CONCURRENCY` computations at once, so a flood of sign-ins costs at most
//! that many times 19 MiB, never a hash per request.
//!
//! The 19 MiB are allocated once per hashing thread and reused, rather than by argon2 on each
//! call (what `password-auth` does): glibc serves a freed block of that size again from the
//! thread's arena, fragmented by everything else the thread allocates, and a flood of 200
//! checks on two threads measured 104 MiB over idle that way, against 2 × 19 MiB now.
//!
//! Rules (Django's `AUTH_PASSWORD_VALIDATORS` in spirit, with a maintained estimator instead
//! of a hand-written list): 8 characters to 1 KiB, and a zxcvbn score of at least 3 (more
//! than 10^8 guesses), with the username and display name given to zxcvbn as words an attacker
//! would try first. zxcvbn's own feedback is what the member is shown.

use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::slots::{SlotError, Slots};

/// Passwords longer than this are refused before hashing: argon2 on megabytes of input is a
/// denial of service, and no person types that much.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The least zxcvbn score a new password needs.
const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

/// Argon2 computations, bounded (see the module docs); cheap to clone.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    slots: Slots,
}

impl PasswordHasher {
    /// At most `concurrency` hashes or checks at once (`PASSWORD_HASH_CONCURRENCY`).
    pub fn new(concurrency: usize) -> Self {
        Self {
            slots: Slots::new(concurrency),
        }
    }

    /// Hashes `password`; [`SlotError::Busy`] when no slot came free in time.
    pub async fn hash(&self, password: String) -> Result<String, SlotError> {
        self.slots.run(move || generate_hash(&password)).await
    }

    /// Whether `password` matches `hash`; [`SlotError::Busy`] when no slot came free in time.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, SlotError> {
        self.slots
            .run(move || verify_password(&password, &hash))
            .await
    }
}

thread_local! {
    /// This thread's argon2 memory, kept from one computation to the next.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs argon2 as `params` say, in this thread's memory.
fn argon2_into(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
) -> argon2::Result<()> {
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..blocks])
    })
}

/// A PHC string of `password`: argon2id, the default parameters, 16 random bytes of salt.
fn generate_hash(password: &str) -> String {
    let params = Params::DEFAULT;
    let salt = rand::random::<[u8; 16]>();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(
        Algorithm::Argon2id,
        Version::V0x13,
        params.clone(),
        password,
        &salt,
        &mut out,
    )
    .expect("the default parameters accept any password up to 4 GiB");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).expect("the default parameters encode"),
        salt: Some(
            SaltString::encode_b64(&salt)
                .expect("16 bytes are a valid salt")
                .as_salt(),
        ),
        hash: Some(Output::new(&out).expect("32 bytes are a valid output")),
    }
    .to_string()
}

/// Whether `password` matches the PHC string `hash`; an unreadable hash matches nothing.
fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(hash) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(version), Ok(params)) = (
        Algorithm::try_from(hash.algorithm),
        hash.version
            .map_or(Ok(Version::default()), Version::try_from),
        Params::try_from(&hash),
    ) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    argon2_into(algorithm, version, params, password, salt, &mut out).is_ok()
        // Output compares in constant time.
        && Output::new(&out).is_ok_and(|computed| computed == expected)
}

/// Hashes a password off the async runtime, unbounded: for the one-shot commands, where the
/// operator is the only caller.
pub async fn hash_password(password: String) -> Result<String, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || generate_hash(&password)).await
}

/// Checks a new password for `username` (and the name they show, when there is one). The
/// error is a sentence for the page.
pub fn validate_new_password(
    password: &str,
    username: &str,
    display_name: &str,
) -> Result<(), String> {
    if password.chars().count() < 8 {
        return Err("Passwords are at least 8 characters long.".into());
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err("Passwords are at most 1024 bytes long.".into());
    }
    let mut inputs = vec![username, "stowage"];
    if !display_name.is_empty() {
        inputs.extend(display_name.split_whitespace());
    }
    let estimate = zxcvbn::zxcvbn(password, &inputs);
    if estimate.score() >= MIN_SCORE {
        return Ok(());
    }
    let mut message = String::from("This password is too easy to guess.");
    if let Some(feedback) = estimate.feedback() {
        if let Some(warning) = feedback.warning() {
            message = format!("This password is too easy to guess: {warning}");
        }
        for suggestion in feedback.suggestions() {
            message.push(' ');
            message.push_str(&suggestion.to_string());
        }
    }
    Err(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_long_common_and_username_like_passwords_are_refused() {
        assert!(validate_new_password("short", "ada", "").is_err());
        assert!(validate_new_password(&"x".repeat(2000), "ada", "").is_err());
        let common = validate_new_password("password123", "ada", "").unwrap_err();
        assert!(common.contains("too easy to guess"), "{common}");
        assert!(validate_new_password("lovelace1815", "lovelace", "").is_err());
        assert!(validate_new_password("ada lovelace", "ada", "Ada Lovelace").is_err());
        assert!(validate_new_password("quartz-ferret-lantern-91", "ada", "").is_ok());
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = PasswordHasher::new(1);
        let hash = hasher
            .hash("quartz-ferret-lantern-91".into())
            .await
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hasher
                .verify("quartz-ferret-lantern-91".into(), hash.clone())
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("quartz-ferret-lantern-92".into(), hash)
                .await
                .unwrap()
        );
    }

    #[test]
    fn hashes_written_before_stowage_hashed_in_its_own_memory_still_verify() {
        // Written by password-auth 1.0, which stowage used until its hashing threads kept
        // their memory.
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$RmISQOke6rBrr5oVL3j3ow$aqN89I5XFIV7kPk84zHtNLbMS0lePaPHmo1SBZt/NZg";
        assert!(verify_password("quartz ferret lantern 41", hash));
        assert!(!verify_password("quartz ferret lantern 42", hash));
        assert!(!verify_password("quartz ferret lantern 41", "not a hash"));
        assert!(!verify_password(
            "quartz ferret lantern 41",
            "$argon2id$v=19$m=19456,t=2,p=1$RmISQOke6rBrr5oVL3j3ow"
        ));
    }
}
