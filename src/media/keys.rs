//! Every storage key and prefix of a member's files, formatted and parsed here and nowhere
//! else. Data stores the keys it is given and never derives one; jobs and the doctor ask here
//! for the prefixes.
//!
//! - A resume: `resumes/<profile>/<random>.pdf` in private storage, a fresh name each upload
//!   (never derived from anything the client sent).
//! - An avatar: `avatars/<profile>/<digest>/<side>.<ext>` in public storage, one object per
//!   size the pages show, the digest the largest size's SHA-256. Content-addressed and so
//!   immutable: a CDN or browser may keep them for ever. A profile records the largest's key
//!   and the sides ("96 192 512"); an avatar stored before sizes were has one key and no
//!   sides.

use crate::storage::random_name;

/// Where avatars live in public storage.
pub const AVATARS: &str = "avatars/";
/// Where resumes live in private storage.
pub const RESUMES: &str = "resumes/";

/// A fresh key for a profile's resume.
pub fn resume_key(profile_id: i64) -> String {
    format!("{RESUMES}{profile_id}/{}.pdf", random_name())
}

/// The key of a profile's avatar at `side` px, whose largest size has SHA-256 `digest` (hex).
pub fn avatar_key(profile_id: i64, digest: &str, side: u32, extension: &str) -> String {
    let digest = digest.get(..32).unwrap_or(digest);
    format!("{AVATARS}{profile_id}/{digest}/{side}.{extension}")
}

/// A key under [`AVATARS`] for something that is not a member's (the doctor's probes), so that
/// a bucket policy on `avatars/*` covers it.
pub fn beside_avatars(name: &str) -> String {
    format!("{AVATARS}{name}")
}

/// Every stored key of an avatar whose largest size is at `key`: with `sizes` ("96 192 512"),
/// the key of each side, beside it in the same folder; without, `key` alone (an avatar stored
/// before sizes were).
pub fn avatar_keys(key: &str, sizes: Option<&str>) -> Vec<String> {
    let sides = avatar_sides(sizes);
    if sides.is_empty() {
        return vec![key.to_owned()];
    }
    sides
        .into_iter()
        .map(|side| avatar_size_key(key, side))
        .collect()
}

/// The sides listed in a profile's `avatar_sizes`, as stored (smallest first).
pub fn avatar_sides(sizes: Option<&str>) -> Vec<u32> {
    sizes
        .unwrap_or_default()
        .split_ascii_whitespace()
        .filter_map(|side| side.parse().ok())
        .collect()
}

/// The key of an avatar's `side` px size, beside `key` (any of its sizes).
pub fn avatar_size_key(key: &str, side: u32) -> String {
    let (folder, file) = key.rsplit_once('/').unwrap_or(("", key));
    let extension = file.rsplit_once('.').map_or("", |(_, ext)| ext);
    let name = if extension.is_empty() {
        side.to_string()
    } else {
        format!("{side}.{extension}")
    };
    if folder.is_empty() {
        name
    } else {
        format!("{folder}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_avatars_sizes_sit_beside_its_largest() {
        let key = "avatars/7/0a1b2c/512.jpg";
        assert_eq!(
            avatar_keys(key, Some("96 192 512")),
            [
                "avatars/7/0a1b2c/96.jpg",
                "avatars/7/0a1b2c/192.jpg",
                "avatars/7/0a1b2c/512.jpg"
            ]
        );
        assert_eq!(
            avatar_keys("avatars/7/old.png", None),
            ["avatars/7/old.png"]
        );
        assert_eq!(
            avatar_keys("avatars/7/old.png", Some("")),
            ["avatars/7/old.png"]
        );
        assert_eq!(avatar_size_key(key, 96), "avatars/7/0a1b2c/96.jpg");
    }

    #[test]
    fn fresh_keys_are_valid_and_under_their_prefix() {
        let digest = "0a1b2c3d".repeat(8);
        let avatar = avatar_key(7, &digest, 96, "webp");
        assert_eq!(avatar, format!("avatars/7/{}/96.webp", &digest[..32]));
        assert_eq!(avatar_size_key(&avatar, 512), avatar.replace("96.", "512."));
        let resume = resume_key(7);
        assert!(resume.starts_with("resumes/7/") && resume.ends_with(".pdf"));
        assert_ne!(resume, resume_key(7));
        for key in [avatar, resume, beside_avatars("stowage-doctor/x.txt")] {
            crate::storage::validate_key(&key).unwrap();
        }
    }
}
