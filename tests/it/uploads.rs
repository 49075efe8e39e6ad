//! Members upload avatars and resumes through the edit page's forms, on both stacks.

use std::io::Cursor;

use image::{ImageFormat, RgbImage};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};

use crate::helpers::{AppOptions, PASSWORD, STACKS, Stack, TestApp, sample_pdf, spawn_app_with};

fn image_bytes(format: ImageFormat, width: u32, height: u32) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 255) as u8, (y % 255) as u8, 90])
    })
    .write_to(&mut out, format)
    .unwrap();
    out.into_inner()
}

/// CRC-32 of a PNG chunk (type and data).
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Route, field, filename, declared type, bytes, expected status, expected message.
type RefusalCase = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Vec<u8>,
    StatusCode,
    &'static str,
);

const GPS_MARKER: &[u8] = b"GPS 51.5074N 0.1278W";

/// A PNG whose eXIf chunk carries GPS data.
fn png_with_exif_gps() -> Vec<u8> {
    let png = image_bytes(ImageFormat::Png, 64, 48);
    let mut exif = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    exif.extend_from_slice(GPS_MARKER);
    let mut chunk = (exif.len() as u32).to_be_bytes().to_vec();
    let mut body = b"eXIf".to_vec();
    body.extend_from_slice(&exif);
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(&crc32(&body).to_be_bytes());
    // After the signature (8) and IHDR (25).
    let mut out = png[..33].to_vec();
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&png[33..]);
    out
}

pub(crate) async fn member_app(stack: Stack, options: AppOptions) -> TestApp {
    let app = spawn_app_with(stack, options).await;
    app.create_member("ada").await;
    assert_eq!(
        app.login("ada", PASSWORD, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    app
}

impl TestApp {
    /// Posts a file to an upload route the way the edit page's form does.
    pub(crate) async fn upload(
        &self,
        path: &str,
        field: &str,
        filename: &str,
        mime: &str,
        bytes: Vec<u8>,
    ) -> reqwest::Response {
        let token = self.csrf_token_from("/profile/edit").await;
        let part = Part::bytes(bytes)
            .file_name(filename.to_owned())
            .mime_str(mime)
            .unwrap();
        let form = Form::new()
            .text("csrf_token", token)
            .part(field.to_owned(), part);
        self.client
            .post(self.url(path))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn ada_profile(&self) -> stowage::db::ProfileRow {
        let user = self
            .db()
            .find_user_by_username("ada")
            .await
            .unwrap()
            .unwrap();
        self.db()
            .find_profile_of_user(user.id)
            .await
            .unwrap()
            .unwrap()
    }

    /// Every object key in the public and private storages.
    pub(crate) async fn all_objects(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for prefix in ["avatars/", "resumes/"] {
            for storage in [&self.storages().public, &self.storages().private] {
                keys.extend(
                    storage
                        .list(prefix)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|o| o.key),
                );
            }
        }
        keys.sort();
        keys
    }

    pub(crate) async fn fetch(&self, url: &str) -> reqwest::Response {
        let url = if url.starts_with('/') {
            self.url(url)
        } else {
            url.to_owned()
        };
        self.anonymous_client().get(url).send().await.unwrap()
    }
}

#[tokio::test]
async fn every_accepted_image_type_becomes_a_stored_avatar() {
    for stack in STACKS {
        let app = member_app(stack, AppOptions::default()).await;
        for (format, mime, stored_type) in [
            (ImageFormat::Png, "image/png", "image/png"),
            (ImageFormat::Jpeg, "image/jpeg", "image/jpeg"),
            (ImageFormat::WebP, "image/webp", "image/png"),
            (ImageFormat::Gif, "image/gif", "image/png"),
        ] {
            // The declared type and name are ignored: the bytes decide.
            let response = app
                .upload(
                    "/profile/avatar",
                    "avatar",
                    "photo.txt",
                    "application/octet-stream",
                    image_bytes(format, 800, 600),
                )
                .await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{stack:?} {mime}");
            let profile = app.ada_profile().await;
            let url = app
                .storages()
                .public
                .url(profile.avatar_key.as_deref().unwrap())
                .unwrap();
            let fetched = app.fetch(&url).await;
            assert_eq!(fetched.status(), StatusCode::OK);
            assert_eq!(
                fetched.headers()["content-type"],
                stored_type,
                "{stack:?} {mime}"
            );
            assert_eq!(fetched.headers()["cache-control"], "max-age=86400");
            let stored = image::load_from_memory(&fetched.bytes().await.unwrap()).unwrap();
            assert_eq!(
                (stored.width(), stored.height()),
                (512, 384),
                "fitted within 512×512"
            );
        }
        // Only the last avatar is left, at its three sizes: each replaced one was deleted.
        assert_eq!(app.all_objects().await.len(), 3, "{stack:?}");
        let home = app.get_html("/").await;
        let key = app.ada_profile().await.avatar_key.unwrap();
        assert!(home.contains(&key), "the directory shows the avatar");
    }
}

/// A JPEG as a phone writes it: the pixels as the sensor saw them (landscape), and an EXIF
/// orientation (6: turn 90° clockwise to show it upright).
fn phone_photo(width: u32, height: u32, orientation: u8) -> Vec<u8> {
    use image::ImageEncoder;
    let mut exif = b"II\x2a\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0".to_vec();
    exif.extend_from_slice(&[orientation, 0, 0, 0, 0, 0, 0, 0]);
    // Left half red, right half blue, as the sensor saw it.
    let pixels = RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            image::Rgb([220, 20, 20])
        } else {
            image::Rgb([20, 20, 220])
        }
    });
    let mut out = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    encoder.set_exif_metadata(exif).unwrap();
    encoder
        .write_image(
            pixels.as_raw(),
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

#[tokio::test]
async fn a_phone_photo_is_stored_upright_at_every_size_the_pages_show() {
    for stack in STACKS {
        let app = member_app(stack, AppOptions::default()).await;
        let photo = phone_photo(1200, 800, 6);
        let response = app
            .upload(
                "/profile/avatar",
                "avatar",
                "IMG_0001.jpg",
                "image/jpeg",
                photo.clone(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{stack:?}");
        let profile = app.ada_profile().await;
        let key = profile.avatar_key.clone().unwrap();
        assert_eq!(profile.avatar_sizes.as_deref(), Some("96 192 512"));
        let folder = key.rsplit_once('/').unwrap().0;
        assert!(key.ends_with("/512.jpg"), "{key}");
        for (side, expected) in [(96, (64, 96)), (192, (128, 192)), (512, (341, 512))] {
            let url = app
                .storages()
                .public
                .url(&format!("{folder}/{side}.jpg"))
                .unwrap();
            let fetched = app.fetch(&url).await;
            assert_eq!(fetched.status(), StatusCode::OK, "{stack:?} {side}");
            let bytes = fetched.bytes().await.unwrap();
            assert!(!bytes.windows(4).any(|w| w == b"Exif"), "{stack:?} {side}");
            let stored = image::load_from_memory(&bytes).unwrap().to_rgb8();
            // Portrait now, and turned clockwise: the sensor's left (red) is on top.
            assert_eq!(stored.dimensions(), expected, "{stack:?} {side}");
            let (top, bottom) = (
                stored.get_pixel(expected.0 / 2, 2),
                stored.get_pixel(expected.0 / 2, expected.1 - 3),
            );
            assert!(
                top[0] > 150 && top[2] < 100,
                "{stack:?} {side}: top is {top:?}"
            );
            assert!(
                bottom[2] > 150 && bottom[0] < 100,
                "{stack:?} {side}: bottom is {bottom:?}"
            );
        }
        // The pages ask for the size they show, with the larger ones for denser screens.
        let home = app.get_html("/").await;
        let url = |side: u32| {
            app.storages()
                .public
                .url(&format!("{folder}/{side}.jpg"))
                .unwrap()
        };
        let srcset = format!("{} 96w, {} 192w, {} 512w", url(96), url(192), url(512));
        for page in [
            home,
            app.get_html(&format!("/profiles/{}", profile.id)).await,
            app.get_html("/profile/edit").await,
        ] {
            assert!(
                page.contains(&format!(r#"src="{}""#, url(96))),
                "{stack:?}: {page}"
            );
            assert!(page.contains(&srcset), "{stack:?}: {page}");
            assert!(page.contains(r#"sizes="96px""#), "{stack:?}");
        }
        // The keys are named by the content: the same photo again lands on them, and
        // nothing else is stored or deleted.
        let response = app
            .upload(
                "/profile/avatar",
                "avatar",
                "again.jpg",
                "image/jpeg",
                photo,
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{stack:?}");
        assert_eq!(app.ada_profile().await.avatar_key.unwrap(), key);
        assert_eq!(app.all_objects().await.len(), 3, "{stack:?}");
        assert_eq!(app.media_objects().await, app.media_references().await);
    }
}

#[tokio::test]
async fn exif_gps_data_does_not_survive_an_avatar_upload() {
    for stack in STACKS {
        let app = member_app(stack, AppOptions::default()).await;
        let original = png_with_exif_gps();
        assert!(original.windows(GPS_MARKER.len()).any(|w| w == GPS_MARKER));
        let response = app
            .upload("/profile/avatar", "avatar", "me.png", "image/png", original)
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{stack:?}");
        let key = app.ada_profile().await.avatar_key.unwrap();
        let stored = app
            .fetch(&app.storages().public.url(&key).unwrap())
            .await
            .bytes()
            .await
            .unwrap();
        assert!(!stored.windows(4).any(|w| w == b"eXIf"), "{stack:?}");
        assert!(!stored.windows(GPS_MARKER.len()).any(|w| w == GPS_MARKER));
    }
}

#[tokio::test]
async fn wrong_types_oversized_truncated_and_empty_files_are_refused_and_nothing_is_kept() {
    let options = AppOptions {
        vars: vec![
            ("AVATAR_MAX_BYTES", "20000".into()),
            ("RESUME_MAX_BYTES", "3000".into()),
        ],
    };
    for stack in STACKS {
        let app = member_app(stack, options.clone()).await;
        let jpeg = image_bytes(ImageFormat::Jpeg, 32, 32);
        let png = image_bytes(ImageFormat::Png, 64, 64);
        let at_limit = crate::helpers::pdf_of_size("x", 3000);
        let mut over_limit = at_limit.clone();
        over_limit.insert(10, b' ');
        let svg =
            b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>".to_vec();
        let cases: Vec<RefusalCase> = vec![
            (
                "/profile/resume",
                "resume",
                "photo.pdf",
                "application/pdf",
                jpeg.clone(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "must be PDF",
            ),
            (
                "/profile/resume",
                "resume",
                "cv.pdf",
                "application/pdf",
                b"<html><body>hi</body></html>".to_vec(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "must be PDF",
            ),
            (
                "/profile/resume",
                "resume",
                "cv.pdf",
                "application/pdf",
                over_limit,
                StatusCode::PAYLOAD_TOO_LARGE,
                "larger than the limit",
            ),
            (
                "/profile/resume",
                "resume",
                "cv.pdf",
                "application/pdf",
                b"%PDF-1.4 cut short".to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "incomplete",
            ),
            (
                "/profile/resume",
                "resume",
                "cv.pdf",
                "application/pdf",
                Vec::new(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty",
            ),
            (
                "/profile/avatar",
                "avatar",
                "a.svg",
                "image/svg+xml",
                svg,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "PNG, JPEG, WebP or GIF",
            ),
            (
                "/profile/avatar",
                "avatar",
                "a.png",
                "image/png",
                png[..png.len() / 2].to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "damaged or truncated",
            ),
            (
                "/profile/avatar",
                "avatar",
                "a.png",
                "image/png",
                Vec::new(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty",
            ),
            (
                "/profile/avatar",
                "avatar",
                "a.png",
                "image/png",
                vec![0x89; 20001],
                StatusCode::PAYLOAD_TOO_LARGE,
                "larger than the limit",
            ),
        ];
        for (path, field, name, mime, bytes, status, message) in cases {
            let response = app.upload(path, field, name, mime, bytes).await;
            assert_eq!(
                response.status(),
                status,
                "{stack:?} {path} {name} {message}"
            );
            let html = response.text().await.unwrap();
            assert!(html.contains(message), "{stack:?} {message}: {html}");
            assert!(
                html.contains("action=\"/profile/resume\""),
                "the edit page is shown again"
            );
        }
        let profile = app.ada_profile().await;
        assert!(
            profile.avatar_key.is_none() && profile.resume_key.is_none(),
            "{stack:?}"
        );
        assert!(
            app.all_objects().await.is_empty(),
            "{stack:?}: nothing half-written is kept"
        );

        // Exactly at the limit is fine.
        let response = app
            .upload(
                "/profile/resume",
                "resume",
                "cv.pdf",
                "application/pdf",
                at_limit,
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{stack:?}");
    }
}

#[tokio::test]
async fn uploads_need_the_form_token_and_a_signed_in_member() {
    for stack in STACKS {
        let app = member_app(stack, AppOptions::default()).await;
        let part = Part::bytes(sample_pdf("x")).file_name("cv.pdf");
        let response = app
            .client
            .post(app.url("/profile/resume"))
            .multipart(Form::new().part("resume", part))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{stack:?}");
        assert!(app.all_objects().await.is_empty());

        let visitor = app.anonymous_client();
        for path in [
            "/profile/edit",
            "/profile/resume",
            "/profile/avatar",
            "/profile/resume/delete",
        ] {
            let response = if path == "/profile/edit" {
                visitor.get(app.url(path)).send().await.unwrap()
            } else {
                visitor.post(app.url(path)).send().await.unwrap()
            };
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
            let location = response.headers()["location"].to_str().unwrap();
            assert_eq!(location, "/login?next=%2Fprofile%2Fedit", "{path}");
        }
    }
}

#[tokio::test]
async fn a_member_changes_only_their_own_profile() {
    let app = member_app(Stack::SqliteFilesystem, AppOptions::default()).await;
    let (_, other) = app.create_member("bob").await;
    // The forms name no profile: whatever is sent, the upload lands on the signed-in member.
    let token = app.csrf_token_from("/profile/edit").await;
    let form = Form::new()
        .text("csrf_token", token)
        .part("resume", Part::bytes(sample_pdf("x")).file_name("cv.pdf"));
    let response = app
        .client
        .post(app.url(&format!("/profile/resume?profile={other}")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        app.db()
            .find_profile(other)
            .await
            .unwrap()
            .unwrap()
            .resume_key
            .is_none()
    );
    assert!(app.ada_profile().await.resume_key.is_some());
}

#[tokio::test]
async fn replacing_a_resume_serves_the_new_bytes_and_deletes_the_old_object() {
    for stack in STACKS {
        let app = member_app(stack, AppOptions::default()).await;
        let first = sample_pdf("first");
        let response = app
            .upload(
                "/profile/resume",
                "resume",
                "../../etc/Zoë\u{202e}fdp.pdf",
                "application/pdf",
                first,
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let old = app.ada_profile().await;
        assert_eq!(
            old.resume_filename.as_deref(),
            Some("Zoëfdp.pdf"),
            "cleaned, no path"
        );
        assert!(
            old.resume_key
                .as_deref()
                .unwrap()
                .starts_with(&format!("resumes/{}/", old.id))
        );

        let second = sample_pdf("second");
        app.upload(
            "/profile/resume",
            "resume",
            "new.pdf",
            "application/pdf",
            second.clone(),
        )
        .await;
        let new = app.ada_profile().await;
        assert_ne!(new.resume_key, old.resume_key);
        assert_eq!(new.resume_size, Some(second.len() as i64));
        assert!(
            !app.storages()
                .private
                .exists(old.resume_key.as_deref().unwrap())
                .await
                .unwrap()
        );
        assert_eq!(
            app.all_objects().await,
            vec![new.resume_key.clone().unwrap()]
        );

        let redirect = app.get(&format!("/resume/{}", new.id)).await;
        let location = redirect.headers()["location"].to_str().unwrap().to_owned();
        let download = app.fetch(&location).await;
        assert_eq!(
            download.headers()["content-disposition"],
            "attachment; filename=\"new.pdf\""
        );
        assert_eq!(
            download.bytes().await.unwrap().to_vec(),
            second,
            "{stack:?}"
        );

        let page = app.get_html("/profile/edit").await;
        assert!(page.contains("new.pdf"), "the edit page shows the resume");

        // Deleting removes the reference, then the object.
        let token = app.csrf_token_from("/profile/edit").await;
        let deleted = app
            .post_form("/profile/resume/delete", &[("csrf_token", &token)])
            .await;
        assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
        assert!(app.ada_profile().await.resume_key.is_none());
        assert!(app.all_objects().await.is_empty(), "{stack:?}");
        assert_eq!(
            app.get(&format!("/resume/{}", new.id)).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn a_storage_failure_mid_upload_is_a_503_and_changes_nothing() {
    let mut app = member_app(Stack::PostgresS3, AppOptions::default()).await;
    app.upload(
        "/profile/resume",
        "resume",
        "cv.pdf",
        "application/pdf",
        sample_pdf("kept"),
    )
    .await;
    let before = app.ada_profile().await;
    let objects = app.all_objects().await;

    let token = app.csrf_token_from("/profile/edit").await;
    app.s3.as_mut().unwrap().stop().await;
    let form = Form::new().text("csrf_token", token).part(
        "resume",
        Part::bytes(sample_pdf("lost")).file_name("cv2.pdf"),
    );
    let response = app
        .client
        .post(app.url("/profile/resume"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Temporarily unavailable")
    );

    app.s3.as_mut().unwrap().restart();
    let after = app.ada_profile().await;
    assert_eq!(
        after.resume_key, before.resume_key,
        "the database is unchanged"
    );
    assert_eq!(app.all_objects().await, objects, "no orphan in the bucket");
}

#[tokio::test]
async fn signing_up_creates_a_member_and_signs_them_in() {
    for stack in STACKS {
        let app = spawn_app_with(stack, AppOptions::default()).await;
        app.create_member("taken").await;
        let token = app.csrf_token_from("/signup").await;
        for (username, password, password2, message) in [
            (
                "",
                "long enough pw",
                "long enough pw",
                "1 to 150 characters",
            ),
            ("new", "short", "short", "at least 8"),
            ("new", "long enough pw", "different pw!!", "differ"),
            ("TAKEN", "long enough pw", "long enough pw", "taken"),
        ] {
            let response = app
                .post_form(
                    "/signup",
                    &[
                        ("username", username),
                        ("password", password),
                        ("password2", password2),
                        ("display_name", "New"),
                        ("csrf_token", &token),
                    ],
                )
                .await;
            assert_eq!(
                response.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{stack:?} {message}"
            );
            assert!(
                response.text().await.unwrap().contains(message),
                "{message}"
            );
        }
        let response = app
            .post_form(
                "/signup",
                &[
                    ("username", "newbie"),
                    ("password", "long enough pw"),
                    ("password2", "long enough pw"),
                    ("display_name", "Newbie Name"),
                    ("csrf_token", &token),
                ],
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{stack:?}");
        assert_eq!(response.headers()["location"], "/profile/edit");
        let page = app.get_html("/profile/edit").await;
        assert!(page.contains("<h1>Newbie Name</h1>"), "{page}");

        let closed = spawn_app_with(
            stack,
            AppOptions {
                vars: vec![("ALLOW_SIGNUP", "false".into())],
            },
        )
        .await;
        assert_eq!(closed.get("/signup").await.status(), StatusCode::NOT_FOUND);
    }
}
