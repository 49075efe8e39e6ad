//! Direct-to-S3 resume uploads: a presigned POST from `/profile/resume/upload-url`, the file
//! posted straight to the S3-compatible server, then `/profile/resume/confirm`.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::helpers::{AppOptions, PASSWORD, Stack, TestApp, sample_pdf};
use crate::uploads::member_app;

/// What `GET /profile/resume/upload-url` answered.
pub(crate) struct Issued {
    pub(crate) key: String,
    url: String,
    fields: Vec<(String, String)>,
}

impl TestApp {
    pub(crate) async fn issue_upload(&self) -> Issued {
        let response = self.get("/profile/resume/upload-url").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["expires_in"], 120, "DIRECT_UPLOAD_EXPIRE's default");
        let fields = body["fields"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        Issued {
            key: body["key"].as_str().unwrap().to_owned(),
            url: body["url"].as_str().unwrap().to_owned(),
            fields,
        }
    }

    /// Posts `bytes` to S3 the way the edit page's script does: the fields, then the file.
    pub(crate) async fn post_to_s3(
        &self,
        issued: &Issued,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> StatusCode {
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
        let response = self
            .anonymous_client()
            .post(&issued.url)
            .multipart(form.part("file", file))
            .send()
            .await
            .unwrap();
        response.status()
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
async fn a_resume_posted_straight_to_s3_is_confirmed_and_served() {
    let app = member_app(Stack::PostgresS3, AppOptions::default()).await;
    let page = app.get_html("/profile/edit").await;
    assert!(page.contains("data-upload-url=\"/profile/resume/upload-url\""));
    assert!(page.contains("/static/js/direct-upload.js"));
    let script = app.get("/static/js/direct-upload.js").await;
    assert_eq!(script.status(), StatusCode::OK);

    let issued = app.issue_upload().await;
    let profile = app.ada_profile().await;
    assert!(issued.key.starts_with(&format!("resumes/{}/", profile.id)));
    let pdf = sample_pdf("direct");
    let stored = app
        .post_to_s3(&issued, "application/pdf", pdf.clone())
        .await;
    assert!(stored.is_success(), "S3 answered {stored}");
    assert!(
        app.ada_profile().await.resume_key.is_none(),
        "nothing points at it before it is confirmed"
    );

    let (status, body) = app.confirm_upload(&issued.key, "Zoë's CV.pdf").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["redirect"], "/profile/edit?saved=resume");
    let profile = app.ada_profile().await;
    let served_key = profile.resume_key.clone().unwrap();
    assert_ne!(
        served_key, issued.key,
        "the profile points at a copy no form covers"
    );
    assert!(served_key.starts_with(&format!("resumes/{}/", profile.id)));
    assert_eq!(profile.resume_size, Some(pdf.len() as i64));
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
    let second = app.issue_upload().await;
    assert!(
        app.post_to_s3(&second, "application/pdf", sample_pdf("second"))
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
async fn s3_refuses_what_the_policy_does_not_allow() {
    let vars = vec![("RESUME_MAX_BYTES", "2048".to_owned())];
    let app = member_app(Stack::PostgresS3, AppOptions { vars }).await;
    let issued = app.issue_upload().await;

    // Too large, empty, another content type: refused by S3 itself.
    let big = [sample_pdf("big"), vec![b' '; 4096]].concat();
    assert!(
        app.post_to_s3(&issued, "application/pdf", big)
            .await
            .is_client_error()
    );
    assert!(
        app.post_to_s3(&issued, "application/pdf", Vec::new())
            .await
            .is_client_error()
    );
    assert!(
        app.post_to_s3(&issued, "text/html", sample_pdf("x"))
            .await
            .is_client_error()
    );
    // Another key, or a policy of one's own, under the issued signature.
    let forge = |field: &str, value: String| {
        let mut fields = issued.fields.clone();
        for (name, old) in &mut fields {
            if name == field {
                *old = value.clone();
            }
        }
        Issued {
            key: issued.key.clone(),
            url: issued.url.clone(),
            fields,
        }
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
        let status = app.post_to_s3(&forged, "application/pdf", big).await;
        assert!(status.is_client_error(), "{status}");
    }
    assert!(app.all_objects().await.is_empty(), "S3 stored nothing");

    // Nothing arrived, so there is nothing to confirm.
    let (status, body) = app.confirm_upload(&issued.key, "cv.pdf").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"].as_str().unwrap().contains("did not arrive"));
    assert!(app.ada_profile().await.resume_key.is_none());
}

#[tokio::test]
async fn what_is_not_a_pdf_is_refused_at_confirm_and_deleted() {
    let app = member_app(Stack::PostgresS3, AppOptions::default()).await;
    let kept = app.issue_upload().await;
    app.post_to_s3(&kept, "application/pdf", sample_pdf("kept"))
        .await;
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
        let issued = app.issue_upload().await;
        let stored = app.post_to_s3(&issued, "application/pdf", bytes).await;
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
    let issued = app.issue_upload().await;
    app.post_to_s3(&issued, "application/pdf", sample_pdf("ada"))
        .await;

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
    let issued = app.issue_upload().await;
    app.post_to_s3(&issued, "application/pdf", sample_pdf("abandoned"))
        .await;
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
    let response = app.get("/profile/resume/upload-url").await;
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
