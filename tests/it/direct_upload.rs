//! Direct-to-S3 resume uploads: a presigned POST or PUT from `/profile/resume/upload-url` for
//! one announced file (its size and SHA-256), the file sent straight to the S3-compatible
//! server, then `/profile/resume/confirm`.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use stowage::storage::Sha256Digest;

use crate::helpers::{AppOptions, PASSWORD, Stack, TestApp, sample_pdf};
use crate::uploads::member_app;

/// What `GET /profile/resume/upload-url` answered.
#[derive(Clone)]
pub(crate) struct Issued {
    pub(crate) key: String,
    method: String,
    url: String,
    fields: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

/// An app with a member, ada, signed in, whose direct uploads use `method` (`post`, `put`).
async fn app_with_method(method: &str) -> TestApp {
    let vars = vec![("DIRECT_UPLOAD_METHOD", method.to_owned())];
    member_app(Stack::PostgresS3, AppOptions { vars }).await
}

fn pairs(object: &Value) -> Vec<(String, String)> {
    object
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

impl TestApp {
    /// Asks for an upload of a file of `size` bytes whose SHA-256 is `sha256` (base64), as the
    /// edit page's script does.
    pub(crate) async fn ask_for_upload(&self, size: usize, sha256: &str) -> reqwest::Response {
        let query = [("size", size.to_string()), ("sha256", sha256.to_owned())];
        self.client
            .get(self.url("/profile/resume/upload-url"))
            .query(&query)
            .send()
            .await
            .unwrap()
    }

    /// Asks for an upload of `bytes`, which must be granted.
    pub(crate) async fn issue_upload(&self, bytes: &[u8]) -> Issued {
        let sha256 = Sha256Digest::of(bytes).to_base64();
        let response = self.ask_for_upload(bytes.len(), &sha256).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["expires_in"], 120, "DIRECT_UPLOAD_EXPIRE's default");
        Issued {
            key: body["key"].as_str().unwrap().to_owned(),
            method: body["method"].as_str().unwrap().to_owned(),
            url: body["url"].as_str().unwrap().to_owned(),
            fields: pairs(&body["fields"]),
            headers: pairs(&body["headers"]),
        }
    }

    /// Sends `bytes` to S3 the way the edit page's script does, by the issued method: a form
    /// (the fields, then the file) or a PUT with the signed headers; `content_type` in place
    /// of the issued one.
    pub(crate) async fn send_to_s3(
        &self,
        issued: &Issued,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> StatusCode {
        let client = self.anonymous_client();
        let request = if issued.method == "PUT" {
            let mut request = client.put(&issued.url).body(bytes);
            for (name, value) in &issued.headers {
                let value = if name == "Content-Type" {
                    content_type
                } else {
                    value
                };
                request = request.header(name, value);
            }
            request
        } else {
            assert_eq!(issued.method, "POST");
            let mut form = Form::new();
            for (name, value) in &issued.fields {
                let value = if name == "Content-Type" {
                    content_type.to_owned()
                } else {
                    value.clone()
                };
                form = form.text(name.clone(), value);
            }
            let file = Part::bytes(bytes)
                .file_name("cv.pdf")
                .mime_str(content_type)
                .unwrap();
            client.post(&issued.url).multipart(form.part("file", file))
        };
        request.send().await.unwrap().status()
    }

    pub(crate) async fn confirm_upload(&self, key: &str, filename: &str) -> (StatusCode, Value) {
        let token = self.csrf_token_from("/profile/edit").await;
        let response = self
            .post_form(
                "/profile/resume/confirm",
                &[("csrf_token", &token), ("key", key), ("filename", filename)],
            )
            .await;
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    async fn switch_member(&self, username: &str) {
        let token = self.csrf_token_from("/profile/edit").await;
        self.post_form("/logout", &[("csrf_token", &token)]).await;
        assert_eq!(
            self.login(username, PASSWORD, "/").await.status(),
            StatusCode::SEE_OTHER
        );
    }
}

#[tokio::test]
async fn a_resume_sent_straight_to_s3_by_post_or_put_is_confirmed_and_served() {
    for method in ["post", "put"] {
        let app = app_with_method(method).await;
        a_resume_sent_straight_to_s3_is_confirmed_and_served(&app, method).await;
    }
}

async fn a_resume_sent_straight_to_s3_is_confirmed_and_served(app: &TestApp, method: &str) {
    let page = app.get_html("/profile/edit").await;
    assert!(page.contains("data-upload-url=\"/profile/resume/upload-url\""));
    assert!(page.contains("/static/js/direct-upload.js"));
    let script = app.get("/static/js/direct-upload.js").await;
    assert_eq!(script.status(), StatusCode::OK);

    let pdf = sample_pdf("direct");
    let issued = app.issue_upload(&pdf).await;
    assert_eq!(issued.method, method.to_uppercase());
    let profile = app.ada_profile().await;
    assert!(issued.key.starts_with(&format!("resumes/{}/", profile.id)));
    let stored = app
        .send_to_s3(&issued, "application/pdf", pdf.clone())
        .await;
    assert!(stored.is_success(), "{method}: S3 answered {stored}");
    assert!(
        app.ada_profile().await.resume_key.is_none(),
        "nothing points at it before it is confirmed"
    );

    let (status, body) = app.confirm_upload(&issued.key, "Zoë's CV.pdf").await;
    assert_eq!(status, StatusCode::OK, "{method}: {body}");
    assert_eq!(body["redirect"], "/profile/edit?saved=resume");
    let profile = app.ada_profile().await;
    let served_key = profile.resume_key.clone().unwrap();
    assert_ne!(
        served_key, issued.key,
        "the profile points at a copy no form covers"
    );
    assert!(served_key.starts_with(&format!("resumes/{}/", profile.id)));
    assert_eq!(profile.resume_size, Some(pdf.len() as i64));
    let references = stowage::media::references(app.db()).await.unwrap();
    assert_eq!(
        references[0].sha256,
        Some(Sha256Digest::of(&pdf).to_hex()),
        "the digest is kept with the profile"
    );
    assert!(
        !app.storages().private.exists(&issued.key).await.unwrap(),
        "the uploaded object itself is gone"
    );

    let redirect = app.get(&format!("/resume/{}", profile.id)).await;
    assert_eq!(redirect.status(), StatusCode::FOUND);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    let download = app.fetch(&location).await;
    assert_eq!(
        download.headers()["content-disposition"],
        "attachment; filename=\"Zo_'s CV.pdf\"; filename*=UTF-8''Zo%C3%AB%27s%20CV.pdf"
    );
    assert_eq!(download.bytes().await.unwrap().to_vec(), pdf);

    // A key is confirmed once; confirming it again changes nothing and deletes nothing.
    let (status, body) = app.confirm_upload(&issued.key, "again.pdf").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not issued to you")
    );
    assert_eq!(app.all_objects().await, vec![served_key.clone()]);

    // A second direct upload replaces the first, which is then deleted.
    let second_pdf = sample_pdf("second");
    let second = app.issue_upload(&second_pdf).await;
    assert!(
        app.send_to_s3(&second, "application/pdf", second_pdf)
            .await
            .is_success()
    );
    assert_eq!(
        app.confirm_upload(&second.key, "v2.pdf").await.0,
        StatusCode::OK
    );
    let second_key = app.ada_profile().await.resume_key.unwrap();
    assert_ne!(second_key, served_key);
    assert_eq!(app.all_objects().await, vec![second_key]);
}

#[tokio::test]
async fn s3_refuses_what_the_signed_upload_does_not_allow() {
    for method in ["post", "put"] {
        let app = app_with_method(method).await;
        let pdf = sample_pdf("announced");
        let issued = app.issue_upload(&pdf).await;

        // Longer, shorter, empty, another file of the same length, another content type:
        // refused by S3 itself, by the signed length and SHA-256.
        let longer = [pdf.clone(), b" ".to_vec()].concat();
        let shorter = pdf[..pdf.len() - 1].to_vec();
        let mut same_length = pdf.clone();
        same_length[10] ^= 1;
        for (case, content_type, bytes) in [
            ("longer", "application/pdf", longer),
            ("shorter", "application/pdf", shorter),
            ("empty", "application/pdf", Vec::new()),
            ("another file", "application/pdf", same_length),
            ("another type", "text/html", pdf.clone()),
        ] {
            let status = app.send_to_s3(&issued, content_type, bytes).await;
            assert!(status.is_client_error(), "{method}, {case}: {status}");
        }
        if method == "post" {
            forged_forms_are_refused(&app, &issued).await;
        } else {
            // Another key under the issued signature.
            let mut other = issued.clone();
            other.url =
                other
                    .url
                    .replacen(&issued.key, &format!("resumes/0/{}.pdf", "f".repeat(32)), 1);
            let status = app.send_to_s3(&other, "application/pdf", pdf.clone()).await;
            assert!(status.is_client_error(), "put, another key: {status}");
        }
        assert!(app.all_objects().await.is_empty(), "S3 stored nothing");

        // Nothing arrived, so there is nothing to confirm.
        let (status, body) = app.confirm_upload(&issued.key, "cv.pdf").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body["error"].as_str().unwrap().contains("did not arrive"));
        assert!(app.ada_profile().await.resume_key.is_none());
    }
}

/// A form with another key, or a policy of one's own, under the issued signature.
async fn forged_forms_are_refused(app: &TestApp, issued: &Issued) {
    let forge = |field: &str, value: String| {
        let mut forged = issued.clone();
        for (name, old) in &mut forged.fields {
            if name == field {
                *old = value.clone();
            }
        }
        forged
    };
    let other_key = forge("key", format!("private/resumes/0/{}.pdf", "f".repeat(32)));
    let mut anything: Vec<Value> = issued
        .fields
        .iter()
        .filter(|(name, _)| name != "policy" && name != "x-amz-signature")
        .map(|(name, _)| serde_json::json!(["starts-with", format!("${name}"), ""]))
        .collect();
    anything.push(serde_json::json!(["content-length-range", 0, 1 << 30]));
    let open_policy = serde_json::json!({
        "expiration": "2099-01-01T00:00:00Z",
        "conditions": anything,
    });
    let open_policy = forge(
        "policy",
        aws_smithy_types::base64::encode(open_policy.to_string()),
    );
    for forged in [other_key, open_policy] {
        let big = [sample_pdf("big"), vec![b' '; 4096]].concat();
        let status = app.send_to_s3(&forged, "application/pdf", big).await;
        assert!(status.is_client_error(), "{status}");
    }
}

#[tokio::test]
async fn an_upload_is_issued_only_for_a_file_announced_within_the_limit() {
    let vars = vec![("RESUME_MAX_BYTES", "2048".to_owned())];
    let app = member_app(Stack::PostgresS3, AppOptions { vars }).await;
    let digest = Sha256Digest::of(b"x").to_base64();
    let cases: [(&str, reqwest::Response, StatusCode, &str); 5] = [
        (
            "over the limit",
            app.ask_for_upload(2049, &digest).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit of 2 KiB",
        ),
        (
            "empty",
            app.ask_for_upload(0, &digest).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty",
        ),
        (
            "no digest",
            app.get("/profile/resume/upload-url").await,
            StatusCode::BAD_REQUEST,
            "SHA-256",
        ),
        (
            "a digest too short",
            app.ask_for_upload(100, "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qc")
                .await,
            StatusCode::BAD_REQUEST,
            "SHA-256",
        ),
        (
            "a size that is not a number",
            app.get("/profile/resume/upload-url?size=-1&sha256=x").await,
            StatusCode::BAD_REQUEST,
            "size in bytes",
        ),
    ];
    for (case, response, status, says) in cases {
        assert_eq!(response.status(), status, "{case}");
        assert_json_error(response, says).await;
    }
    let issued: i64 = sqlx::query_scalar("SELECT count(*) FROM direct_uploads")
        .fetch_one(app.db().pool())
        .await
        .unwrap();
    assert_eq!(issued, 0, "nothing was issued");
}

#[tokio::test]
async fn what_is_not_a_pdf_is_refused_at_confirm_and_deleted() {
    let app = member_app(Stack::PostgresS3, AppOptions::default()).await;
    let kept_pdf = sample_pdf("kept");
    let kept = app.issue_upload(&kept_pdf).await;
    app.send_to_s3(&kept, "application/pdf", kept_pdf).await;
    assert_eq!(
        app.confirm_upload(&kept.key, "kept.pdf").await.0,
        StatusCode::OK
    );
    let kept_key = app.ada_profile().await.resume_key.unwrap();

    let truncated = {
        let pdf = sample_pdf("cut");
        pdf[..pdf.len() - 10].to_vec()
    };
    let cases: [(&str, Vec<u8>, StatusCode, &str); 2] = [
        (
            "html sent as a PDF",
            b"<!doctype html><script>alert(1)</script>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Resumes must be PDF files.",
        ),
        (
            "a truncated PDF",
            truncated,
            StatusCode::UNPROCESSABLE_ENTITY,
            "no end-of-file marker",
        ),
    ];
    for (case, bytes, expected, message) in cases {
        let issued = app.issue_upload(&bytes).await;
        let stored = app.send_to_s3(&issued, "application/pdf", bytes).await;
        assert!(stored.is_success(), "{case}: S3 answered {stored}");
        let (status, body) = app.confirm_upload(&issued.key, "x.pdf").await;
        assert_eq!(status, expected, "{case}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(message),
            "{case}: {body}"
        );
        assert!(
            !app.storages().private.exists(&issued.key).await.unwrap(),
            "{case}: the refused object is deleted"
        );
        let profile = app.ada_profile().await;
        assert_eq!(profile.resume_key, Some(kept_key.clone()), "{case}");
    }
    assert_eq!(app.all_objects().await, vec![kept_key]);
}

#[tokio::test]
async fn only_the_member_a_key_was_issued_to_can_confirm_it() {
    let mut app = member_app(Stack::PostgresS3, AppOptions::default()).await;
    let (_, bob_profile) = app.create_member("bob").await;
    let pdf = sample_pdf("ada");
    let issued = app.issue_upload(&pdf).await;
    app.send_to_s3(&issued, "application/pdf", pdf).await;

    // Without the form token.
    let response = app
        .post_form("/profile/resume/confirm", &[("key", &issued.key)])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_json_error(response, "form").await;
    // Anonymous.
    let anonymous = app
        .anonymous_client()
        .get(app.url("/profile/resume/upload-url"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert!(
        anonymous.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login?next=")
    );

    // Another member.
    app.switch_member("bob").await;
    let (status, _) = app.confirm_upload(&issued.key, "stolen.pdf").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let bob = app.db().find_profile(bob_profile).await.unwrap().unwrap();
    assert!(bob.resume_key.is_none());
    assert!(
        app.storages().private.exists(&issued.key).await.unwrap(),
        "not deleted either"
    );

    // S3 down at confirm: a 503, and the upload can still be confirmed once it is back.
    app.switch_member("ada").await;
    let token = app.csrf_token_from("/profile/edit").await;
    app.s3.as_mut().unwrap().stop().await;
    let response = app
        .post_form(
            "/profile/resume/confirm",
            &[
                ("csrf_token", &token),
                ("key", &issued.key),
                ("filename", "cv.pdf"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_json_error(response, "not answering").await;
    app.s3.as_mut().unwrap().restart();
    assert!(app.ada_profile().await.resume_key.is_none());
    assert_eq!(
        app.confirm_upload(&issued.key, "cv.pdf").await.0,
        StatusCode::OK
    );
    let key = app.ada_profile().await.resume_key.unwrap();
    assert_eq!(
        app.all_objects().await,
        vec![key],
        "no copy left from the failed attempt"
    );
}

#[tokio::test]
async fn abandoned_direct_uploads_are_swept() {
    let app = member_app(Stack::PostgresS3, AppOptions::default()).await;
    let pdf = sample_pdf("abandoned");
    let issued = app.issue_upload(&pdf).await;
    app.send_to_s3(&issued, "application/pdf", pdf).await;
    assert_eq!(app.all_objects().await, vec![issued.key.clone()]);

    // A sweep deletes uploads issued before its cut-off; this one counts as old.
    let later = stowage::db::now() + 1;
    stowage::media::sweep_abandoned_direct_uploads(app.db(), app.storages(), later).await;
    assert!(app.all_objects().await.is_empty());
    assert_eq!(
        app.confirm_upload(&issued.key, "cv.pdf").await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_filesystem_backend_keeps_the_streamed_form() {
    let app = member_app(Stack::SqliteFilesystem, AppOptions::default()).await;
    let page = app.get_html("/profile/edit").await;
    assert!(!page.contains("data-upload-url"));
    assert!(!page.contains("direct-upload.js"));
    let pdf = sample_pdf("local");
    let response = app
        .ask_for_upload(pdf.len(), &Sha256Digest::of(&pdf).to_base64())
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("use the upload form")
    );
}

/// The script's routes answer refusals and failures as JSON it can show, never as a page.
async fn assert_json_error(response: reqwest::Response, says: &str) {
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{body}");
}
