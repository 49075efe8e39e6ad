//! The hostile-input corpus: what an attacker (or a broken client) sends, against the running
//! server. Every case states the status and the words the person sees; after a refused case
//! the database and the storages are exactly as before, and after an accepted one what was
//! stored is under a key the server chose, with a cleaned name.

use std::path::PathBuf;
use std::time::Duration;

use image::ImageFormat;
use reqwest::StatusCode;
use stowage::storage::filesystem::PRIVATE_LOCATION;

use crate::helpers::{
    AppOptions, PASSWORD, STACKS, Stack, TestApp, extract_csrf, pdf_of_size, raw_request,
    sample_pdf, walk,
};
use crate::uploads::member_app;

pub(crate) mod accounts;
mod bounds;

/// What a case sends.
enum Send {
    /// A multipart body as written here (its first part this session's CSRF token, unless
    /// `token` is false), posted to `route` as the signed-in member.
    Upload {
        route: &'static str,
        parts: Vec<Part>,
        token: bool,
    },
    /// Bytes on a socket, for what no HTTP client sends: `{cookie}` and `{token}` in `head`
    /// are the member's session cookie and CSRF token.
    Raw {
        head: String,
        body: Vec<u8>,
        chunks: usize,
        pause: Duration,
    },
    /// A GET as the signed-in member, or as a visitor.
    Get { path: String, member: bool },
    /// A GET carrying this session cookie instead of the member's.
    GetWithCookie { path: &'static str, cookie: String },
    /// A GET with the cookie of a real session of the member's that has since expired.
    GetWithExpiredSession { path: &'static str },
    /// The login form, posted by a visitor with a valid token of their own.
    Login {
        username: &'static str,
        password: String,
        next: &'static str,
    },
    /// `route`, posted as the signed-in member with this token and the `fields`.
    PostWithToken {
        route: &'static str,
        token: Token,
        fields: &'static [(&'static str, &'static str)],
    },
}

enum Token {
    /// This session's own, as its forms carry it.
    Valid,
    Missing,
    FromAnotherSession,
    FromBeforeLogout,
}

/// A part of a hand-written multipart body.
struct Part {
    name: &'static str,
    filename: Option<Vec<u8>>,
    content_type: &'static str,
    bytes: Vec<u8>,
}

fn file(name: &'static str, filename: &[u8], content_type: &'static str, bytes: Vec<u8>) -> Part {
    Part {
        name,
        filename: Some(filename.to_vec()),
        content_type,
        bytes,
    }
}

fn field(name: &'static str, value: &str) -> Part {
    Part {
        name,
        filename: None,
        content_type: "",
        bytes: value.as_bytes().to_vec(),
    }
}

const BOUNDARY: &str = "hostile-boundary-7d1f";

fn multipart(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{}\"", part.name).as_bytes(),
        );
        if let Some(filename) = &part.filename {
            body.extend_from_slice(b"; filename=\"");
            body.extend_from_slice(filename);
            body.extend_from_slice(b"\"");
        }
        body.extend_from_slice(b"\r\n");
        if !part.content_type.is_empty() {
            body.extend_from_slice(format!("Content-Type: {}\r\n", part.content_type).as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&part.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// `bytes` with `{token}` replaced by `token`; bytes that are not UTF-8 stay as they are.
fn replace_token(bytes: &[u8], token: &str) -> Vec<u8> {
    let marker = b"{token}";
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = rest.windows(marker.len()).position(|w| w == marker) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(token.as_bytes());
        rest = &rest[at + marker.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// What a case must lead to.
enum Expect {
    /// Refused with this status, the page saying this; nothing changes.
    Refused(StatusCode, &'static str),
    /// Redirected to exactly this location; nothing changes.
    Redirected(StatusCode, &'static str),
    /// Accepted: the member's resume (or avatar) is replaced by an object under a key the
    /// server chose, its download name cleaned of paths and control characters.
    StoredSafely,
}

struct Case {
    name: &'static str,
    send: Send,
    expect: Expect,
    /// Only where the filesystem backend serves `/media/` itself.
    filesystem_only: bool,
}

fn case(name: &'static str, send: Send, expect: Expect) -> Case {
    Case {
        name,
        send,
        expect,
        filesystem_only: false,
    }
}

fn pdf() -> Vec<u8> {
    sample_pdf("hostile")
}

fn resume_with_name(filename: &[u8]) -> Send {
    Send::Upload {
        route: "/profile/resume",
        parts: vec![file("resume", filename, "application/pdf", pdf())],
        token: true,
    }
}

fn resume(content_type: &'static str, bytes: Vec<u8>) -> Send {
    Send::Upload {
        route: "/profile/resume",
        parts: vec![file("resume", b"cv.pdf", content_type, bytes)],
        token: true,
    }
}

fn avatar(filename: &[u8], content_type: &'static str, bytes: Vec<u8>) -> Send {
    Send::Upload {
        route: "/profile/avatar",
        parts: vec![file("avatar", filename, content_type, bytes)],
        token: true,
    }
}

fn get(path: &str) -> Send {
    Send::Get {
        path: path.to_owned(),
        member: true,
    }
}

/// A raw request line and headers for the member, with `Connection: close`.
fn raw_head(request_line: &str, extra: &str) -> String {
    format!(
        "{request_line}\r\nHost: 127.0.0.1\r\nCookie: {{cookie}}\r\n{extra}\
         Connection: close\r\n\r\n"
    )
}

fn raw_get(path: &str) -> Send {
    Send::Raw {
        head: raw_head(&format!("GET {path} HTTP/1.1"), ""),
        body: Vec::new(),
        chunks: 1,
        pause: Duration::ZERO,
    }
}

/// A resume upload written on the socket, its `Content-Length` as given.
fn raw_upload(body: Vec<u8>, content_length: usize, chunks: usize, pause: Duration) -> Send {
    Send::Raw {
        head: raw_head(
            "POST /profile/resume HTTP/1.1",
            &format!(
                "Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
                 Content-Length: {content_length}\r\n"
            ),
        ),
        body,
        chunks,
        pause,
    }
}

fn image(format: ImageFormat, width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(width, height, image::Rgb([200, 30, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A valid 1×1 PNG whose header claims `width`×`height`: a decompression bomb's calling card.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = image(ImageFormat::Png, 1, 1);
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crate::uploads::crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

const RESUME_LIMIT: usize = 4000;
const AVATAR_LIMIT: usize = 40_000;

fn cases(stack: Stack) -> Vec<Case> {
    let at_limit = pdf_of_size("hostile", RESUME_LIMIT);
    let mut over_limit = at_limit.clone();
    over_limit.insert(10, b' ');
    let jpeg = image(ImageFormat::Jpeg, 40, 40);
    let token_part = |parts: Vec<Part>| {
        let mut all = vec![field("csrf_token", "{token}")];
        all.extend(parts);
        all
    };
    let thousand_parts = {
        let mut parts: Vec<Part> = (0..999).map(|_| field("junk", "x")).collect();
        parts.push(file("resume", b"cv.pdf", "application/pdf", pdf()));
        token_part(parts)
    };
    let short_body = multipart(&token_part(vec![file(
        "resume",
        b"cv.pdf",
        "application/pdf",
        pdf(),
    )]));
    let _ = stack;

    vec![
        // --- Paths: a client filename is a download name, never a path.
        case("traversal in a filename", resume_with_name(b"../../etc/passwd"), Expect::StoredSafely),
        case("backslash traversal", resume_with_name(b"..\\..\\x.pdf"), Expect::StoredSafely),
        case("absolute path", resume_with_name(b"/etc/passwd"), Expect::StoredSafely),
        case("windows absolute path", resume_with_name(b"C:\\Windows\\evil.pdf"), Expect::StoredSafely),
        case("NUL in a filename", resume_with_name(b"cv\0.pdf"), Expect::Refused(StatusCode::BAD_REQUEST, "could not be read")),
        case("ASCII control characters in a filename", resume_with_name(b"cv\x07\x1b[31m\x08.pdf"), Expect::Refused(StatusCode::BAD_REQUEST, "could not be read")),
        case("C1 control characters in a filename", resume_with_name("cv\u{85}\u{9b}31m\u{7f}.pdf".as_bytes()), Expect::Refused(StatusCode::BAD_REQUEST, "could not be read")),
        case("a 10,000-character filename", resume_with_name(&[b'a'; 10_000]), Expect::StoredSafely),
        case("RTL override in a filename", resume_with_name("cv\u{202E}fdp.exe".as_bytes()), Expect::StoredSafely),
        case("traversal in an avatar's name", avatar(b"../../../tmp/evil.png", "image/png", image(ImageFormat::Png, 20, 20)), Expect::StoredSafely),
        Case { filesystem_only: true, ..case("/media/ with ..", raw_get("/media/../../etc/passwd"), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")) },
        Case { filesystem_only: true, ..case("/media/ with %2e%2e", raw_get("/media/%2e%2e/%2e%2e/stowage.db"), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")) },
        Case { filesystem_only: true, ..case("/media/ double-encoded", raw_get("/media/%252e%252e/%252e%252e/stowage.db"), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")) },
        Case { filesystem_only: true, ..case("/media/ encoded slash", raw_get(&format!("/media/{PRIVATE_LOCATION}/..%2f..%2fstowage.db?expires=9999999999&signature=00")), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")) },
        Case { filesystem_only: true, ..case("/media/ with NUL", raw_get("/media/avatars/%00.png"), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")) },
        // --- Files: the bytes decide, never the name or the declared type.
        case("PDF header on HTML", resume("application/pdf", b"%PDF-1.4\n<html><script>alert(document.cookie)</script></html>".to_vec()), Expect::Refused(StatusCode::UNPROCESSABLE_ENTITY, "incomplete")),
        case("PDF header and end marker around HTML", resume("application/pdf", b"%PDF-1.4\n<html><script>alert(document.cookie)</script></html>\n%%EOF\n".to_vec()), Expect::Refused(StatusCode::UNPROCESSABLE_ENTITY, "not a valid PDF")),
        case("GIF+JS polyglot avatar", avatar(b"a.gif", "image/gif", b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=alert(1)//;".to_vec()), Expect::Refused(StatusCode::UNPROCESSABLE_ENTITY, "damaged or truncated")),
        case("SVG with script", avatar(b"a.svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'><script>alert(2)</script></svg>".to_vec()), Expect::Refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, "PNG, JPEG, WebP or GIF")),
        case("HTML sent as application/pdf", resume("application/pdf", b"<!doctype html><html><body onload=alert(1)></body></html>".to_vec()), Expect::Refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, "must be PDF")),
        case("a PNG claiming 100000x100000", avatar(b"bomb.png", "image/png", png_claiming(100_000, 100_000)), Expect::Refused(StatusCode::PAYLOAD_TOO_LARGE, "pixels")),
        case("a truncated JPEG", avatar(b"a.jpg", "image/jpeg", jpeg[..jpeg.len() / 2].to_vec()), Expect::Refused(StatusCode::UNPROCESSABLE_ENTITY, "damaged or truncated")),
        case("an executable named cv.pdf", resume("application/pdf", b"MZ\x90\x00\x03\x00\x00\x00This program cannot be run in DOS mode".to_vec()), Expect::Refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, "must be PDF")),
        case("a JPEG as a resume", resume("application/pdf", jpeg.clone()), Expect::Refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, "must be PDF")),
        case("an empty resume", resume("application/pdf", Vec::new()), Expect::Refused(StatusCode::UNPROCESSABLE_ENTITY, "empty")),
        case("an empty avatar", avatar(b"a.png", "image/png", Vec::new()), Expect::Refused(StatusCode::UNPROCESSABLE_ENTITY, "empty")),
        case("an avatar over its limit", avatar(b"a.png", "image/png", vec![0x89; AVATAR_LIMIT + 1]), Expect::Refused(StatusCode::PAYLOAD_TOO_LARGE, "larger than the limit")),
        // --- Requests.
        case("1,000 parts", Send::Upload { route: "/profile/resume", parts: thousand_parts, token: false }, Expect::Refused(StatusCode::UNPROCESSABLE_ENTITY, "empty")),
        case("the token twice", Send::Upload { route: "/profile/resume", parts: vec![field("csrf_token", "{token}"), file("resume", b"cv.pdf", "application/pdf", pdf())], token: true }, Expect::Refused(StatusCode::UNPROCESSABLE_ENTITY, "The file is empty")),
        case("the file twice", Send::Upload { route: "/profile/resume", parts: vec![file("resume", b"one.pdf", "application/pdf", pdf()), file("resume", b"two.pdf", "application/pdf", pdf())], token: true }, Expect::StoredSafely),
        case("no boundary", Send::Raw { head: raw_head("POST /profile/resume HTTP/1.1", "Content-Type: multipart/form-data\r\nContent-Length: 10\r\n"), body: b"0123456789".to_vec(), chunks: 1, pause: Duration::ZERO }, Expect::Refused(StatusCode::BAD_REQUEST, "could not be read")),
        case("not multipart at all", Send::Raw { head: raw_head("POST /profile/resume HTTP/1.1", "Content-Type: application/json\r\nContent-Length: 2\r\n"), body: b"{}".to_vec(), chunks: 1, pause: Duration::ZERO }, Expect::Refused(StatusCode::BAD_REQUEST, "could not be read")),
        case("a body exactly at the limit", resume("application/pdf", at_limit), Expect::StoredSafely),
        case("a body one byte over", resume("application/pdf", over_limit), Expect::Refused(StatusCode::PAYLOAD_TOO_LARGE, "larger than the limit")),
        case("Content-Length shorter than the body", raw_upload(short_body.clone(), short_body.len() / 2, 1, Duration::ZERO), Expect::Refused(StatusCode::BAD_REQUEST, "could not be read")),
        case("Content-Length longer than the body", raw_upload(short_body[..short_body.len() / 2].to_vec(), short_body.len(), 1, Duration::ZERO), Expect::Refused(StatusCode::REQUEST_TIMEOUT, "took longer than")),
        case("a slowloris body", raw_upload(short_body.clone(), short_body.len(), 20, Duration::from_millis(300)), Expect::Refused(StatusCode::REQUEST_TIMEOUT, "took longer than")),
        // --- Ids: plain positive decimal numbers only.
        case("/resume/-1", get("/resume/-1"), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")),
        // Share links: a guessed token, a cut or altered one, a path, none of them looked up.
        case("/s/ guessed token", get(&format!("/s/{}", "5e".repeat(32))), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")),
        case("/s/ truncated token", get(&format!("/s/{}", "5e".repeat(31))), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")),
        case("/s/ upper-case token", get(&format!("/s/{}", "5E".repeat(32))), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")),
        case("/s/ with ..", raw_get("/s/../../etc/passwd"), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")),
        case("/resume/0", get("/resume/0"), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")),
        case("/resume/1e3", get("/resume/1e3"), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")),
        case("/resume/ past i64", get("/resume/9223372036854775808"), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")),
        case("/resume/1;drop table", get("/resume/1;drop%20table%20profiles"), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")),
        case("/resume/ Arabic-Indic digits", get("/resume/%D9%A1%D9%A2"), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")),
        case("/profiles/ fullwidth digits", get("/profiles/%EF%BC%91"), Expect::Refused(StatusCode::NOT_FOUND, "nothing here")),
        // Directory pages: a page's link is a name key and an id, within bounds, one way.
        case("a directory page without its id", get("/?after=ada"), Expect::Refused(StatusCode::BAD_REQUEST, "link is not valid")),
        case("a directory page with a bad id", get("/?after=ada&id=1e3"), Expect::Refused(StatusCode::BAD_REQUEST, "link is not valid")),
        case("a directory page both ways", get("/?after=a&before=b&id=1"), Expect::Refused(StatusCode::BAD_REQUEST, "link is not valid")),
        case("a directory page with a 2 kB key", get(&format!("/?after={}&id=1", "a".repeat(2048))), Expect::Refused(StatusCode::BAD_REQUEST, "link is not valid")),
        // --- Direct uploads: an upload is issued only for a file announced within the limit.
        case("an upload announced over the limit", get("/profile/resume/upload-url?size=18446744073709551615&sha256=ungWv48Bz%2BpBQUDeXa4iI7ADYaOWF3qctBD%2FYfIAFa0%3D"), Expect::Refused(StatusCode::PAYLOAD_TOO_LARGE, "larger than the limit")),
        case("an upload announced with a truncated SHA-256", get("/profile/resume/upload-url?size=100&sha256=ungWv48Bz%2BpBQUDeXa4iI7ADYaOWF3qc"), Expect::Refused(StatusCode::BAD_REQUEST, "its SHA-256 in base64")),
        case("an upload announced past u64", get("/profile/resume/upload-url?size=18446744073709551616&sha256=x"), Expect::Refused(StatusCode::BAD_REQUEST, "its size in bytes")),
        // --- Forms and sessions.
        case("a 1 MiB password", Send::Login { username: "ada", password: "p".repeat(1024 * 1024), next: "/" }, Expect::Refused(StatusCode::UNAUTHORIZED, "do not match a member")),
        case("no CSRF token", Send::PostWithToken { route: "/profile/resume/delete", token: Token::Missing, fields: &[] }, Expect::Refused(StatusCode::FORBIDDEN, "has expired or was not sent by this site")),
        case("another session's CSRF token", Send::PostWithToken { route: "/profile/resume/delete", token: Token::FromAnotherSession, fields: &[] }, Expect::Refused(StatusCode::FORBIDDEN, "has expired or was not sent by this site")),
        case("a CSRF token from before logout", Send::PostWithToken { route: "/profile/resume/delete", token: Token::FromBeforeLogout, fields: &[] }, Expect::Refused(StatusCode::FORBIDDEN, "has expired or was not sent by this site")),
        // Export and deletion ask for the password again, with the form's token.
        case("an export without a CSRF token", Send::PostWithToken { route: "/profile/export", token: Token::Missing, fields: &[("password", PASSWORD)] }, Expect::Refused(StatusCode::FORBIDDEN, "has expired or was not sent by this site")),
        case("an export with the wrong password", Send::PostWithToken { route: "/profile/export", token: Token::Valid, fields: &[("password", "not the password")] }, Expect::Refused(StatusCode::UNPROCESSABLE_ENTITY, "That is not your password")),
        case("a deletion without a CSRF token", Send::PostWithToken { route: "/profile/delete", token: Token::Missing, fields: &[("password", PASSWORD)] }, Expect::Refused(StatusCode::FORBIDDEN, "has expired or was not sent by this site")),
        case("a deletion with another session's CSRF token", Send::PostWithToken { route: "/profile/delete", token: Token::FromAnotherSession, fields: &[("password", PASSWORD)] }, Expect::Refused(StatusCode::FORBIDDEN, "has expired or was not sent by this site")),
        case("a deletion with the wrong password", Send::PostWithToken { route: "/profile/delete", token: Token::Valid, fields: &[("password", "not the password")] }, Expect::Refused(StatusCode::UNPROCESSABLE_ENTITY, "That is not your password")),
        case("an upload without a token", Send::Upload { route: "/profile/resume", parts: vec![file("resume", b"cv.pdf", "application/pdf", pdf())], token: false }, Expect::Refused(StatusCode::FORBIDDEN, "has expired or was not sent by this site")),
        case("a forged session cookie", Send::GetWithCookie { path: "/profile/edit", cookie: "AAAAAAAAAAAAAAAAAAAAAA".into() }, Expect::Redirected(StatusCode::SEE_OTHER, "/login?next=%2Fprofile%2Fedit")),
        case("an expired session cookie", Send::GetWithExpiredSession { path: "/profile/edit" }, Expect::Redirected(StatusCode::SEE_OTHER, "/login?next=%2Fprofile%2Fedit")),
        case("a garbage session cookie", Send::GetWithCookie { path: "/profile/edit", cookie: "../../etc/passwd%00".into() }, Expect::Redirected(StatusCode::SEE_OTHER, "/login?next=%2Fprofile%2Fedit")),
        // `/resume/{id}` reads the session on a lane of its own (web/resume.rs): the same refusals.
        case("an expired session cookie on /resume/{id}", Send::GetWithExpiredSession { path: "/resume/1" }, Expect::Refused(StatusCode::FORBIDDEN, "signed-in members only")),
        case("a garbage session cookie on /resume/{id}", Send::GetWithCookie { path: "/resume/1", cookie: "../../etc/passwd%00".into() }, Expect::Refused(StatusCode::FORBIDDEN, "signed-in members only")),
        case("next=//evil.example", Send::Login { username: "ada", password: PASSWORD.into(), next: "//evil.example" }, Expect::Redirected(StatusCode::SEE_OTHER, "/")),
        case("next=https://evil.example", Send::Login { username: "ada", password: PASSWORD.into(), next: "https://evil.example/x" }, Expect::Redirected(StatusCode::SEE_OTHER, "/")),
        case("next=/\\evil.example", Send::Login { username: "ada", password: PASSWORD.into(), next: "/\\evil.example" }, Expect::Redirected(StatusCode::SEE_OTHER, "/")),
    ]
}

/// A profile's id, avatar key, resume key and resume name.
type ProfileFiles = (i64, Option<String>, Option<String>, Option<String>);

/// Everything a request could have changed: users, profiles, pending direct uploads, every
/// object in both storages and every file under the app's directory.
#[derive(Debug, PartialEq)]
struct Snapshot {
    users: Vec<(i64, String, String)>,
    profiles: Vec<ProfileFiles>,
    direct_uploads: i64,
    objects: Vec<(String, u64)>,
    files: Vec<PathBuf>,
}

async fn snapshot(app: &TestApp) -> Snapshot {
    let pool = app.db().pool();
    let users = sqlx::query_as("SELECT id, username, password_hash FROM users ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap();
    let profiles = sqlx::query_as(
        "SELECT id, avatar_key, resume_key, resume_filename FROM profiles ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let (direct_uploads,): (i64,) = sqlx::query_as("SELECT count(*) FROM direct_uploads")
        .fetch_one(pool)
        .await
        .unwrap();
    let mut objects = Vec::new();
    for storage in [&app.storages().public, &app.storages().private] {
        for object in storage.list("").await.unwrap() {
            objects.push((object.key, object.size));
        }
    }
    objects.sort();
    let mut files = walk(app.dir.path());
    // SQLite's own files change with every session touched.
    files.retain(|f| !f.to_string_lossy().contains("stowage.db"));
    files.sort();
    Snapshot {
        users,
        profiles,
        direct_uploads,
        objects,
        files,
    }
}

/// Status, `Location` and body of the answer to `send`.
async fn run(app: &TestApp, send: &Send) -> (StatusCode, String, String) {
    let port = app.port();
    let answer = |response: reqwest::Response| async move {
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, location, response.text().await.unwrap_or_default())
    };
    match send {
        Send::Upload {
            route,
            parts,
            token,
        } => {
            let csrf = app.csrf_token_from("/profile/edit").await;
            let mut body = Vec::new();
            if *token {
                body = multipart(&[field("csrf_token", &csrf)]);
                body.truncate(body.len() - format!("--{BOUNDARY}--\r\n").len());
            }
            // `{token}` in a hand-written field stands for this session's token.
            body.extend_from_slice(&replace_token(&multipart(parts), &csrf));
            let response = app
                .client
                .post(app.url(route))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(body)
                .send()
                .await
                .unwrap();
            answer(response).await
        }
        Send::Raw {
            head,
            body,
            chunks,
            pause,
        } => {
            let csrf = app.csrf_token_from("/profile/edit").await;
            let cookie = app.cookie_header();
            let head = head.replace("{cookie}", &cookie);
            let body = replace_token(body, &csrf);
            let (status, text) = raw_request(port, &head, &body, *chunks, *pause).await;
            let location = text
                .lines()
                .find_map(|l| l.strip_prefix("location: "))
                .unwrap_or("")
                .to_owned();
            (StatusCode::from_u16(status).unwrap(), location, text)
        }
        Send::Get { path, member } => {
            let client = if *member {
                app.client.clone()
            } else {
                app.anonymous_client()
            };
            answer(client.get(app.url(path)).send().await.unwrap()).await
        }
        Send::GetWithCookie { path, cookie } => {
            let response = app
                .anonymous_client()
                .get(app.url(path))
                .header("cookie", format!("stowage_session={cookie}"))
                .send()
                .await
                .unwrap();
            answer(response).await
        }
        Send::GetWithExpiredSession { path } => {
            let browser = reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let cookie = sign_in(app, &browser).await;
            let expired = sqlx::query("UPDATE sessions SET expires_at = $1 WHERE id = $2")
                .bind(stowage::db::now() - 1)
                .bind(&cookie)
                .execute(app.db().pool())
                .await
                .unwrap();
            assert_eq!(
                expired.rows_affected(),
                1,
                "the cookie names a stored session"
            );
            let response = app
                .anonymous_client()
                .get(app.url(path))
                .header("cookie", format!("stowage_session={cookie}"))
                .send()
                .await
                .unwrap();
            answer(response).await
        }
        Send::Login {
            username,
            password,
            next,
        } => {
            let visitor = reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let page = visitor.get(app.url("/login")).send().await.unwrap();
            let token = extract_csrf(&page.text().await.unwrap()).unwrap();
            let response = visitor
                .post(app.url("/login"))
                .form(&[
                    ("username", *username),
                    ("password", password.as_str()),
                    ("csrf_token", &token),
                    ("next", next),
                ])
                .send()
                .await
                .unwrap();
            answer(response).await
        }
        Send::PostWithToken {
            route,
            token,
            fields,
        } => {
            let fresh = || {
                reqwest::Client::builder()
                    .cookie_store(true)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap()
            };
            let (client, token) = match token {
                Token::Valid => (
                    app.client.clone(),
                    app.csrf_token_from("/profile/edit").await,
                ),
                Token::Missing => (app.client.clone(), String::new()),
                Token::FromAnotherSession => {
                    let other = fresh();
                    let page = other.get(app.url("/login")).send().await.unwrap();
                    let token = extract_csrf(&page.text().await.unwrap()).unwrap();
                    (app.client.clone(), token)
                }
                Token::FromBeforeLogout => {
                    // A second browser signs in, keeps a form's token, signs out and in
                    // again, then replays the token.
                    let browser = fresh();
                    sign_in(app, &browser).await;
                    let page = browser.get(app.url("/profile/edit")).send().await.unwrap();
                    let before = extract_csrf(&page.text().await.unwrap()).unwrap();
                    let out = browser
                        .post(app.url("/logout"))
                        .form(&[("csrf_token", &before)])
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(out.status(), StatusCode::SEE_OTHER, "signed out");
                    sign_in(app, &browser).await;
                    (browser, before)
                }
            };
            let mut form = vec![("csrf_token", token.as_str())];
            form.extend(fields.iter().copied());
            let response = client
                .post(app.url(route))
                .form(&form)
                .send()
                .await
                .unwrap();
            answer(response).await
        }
    }
}

/// Signs the member in with `browser`; returns the session cookie's value.
async fn sign_in(app: &TestApp, browser: &reqwest::Client) -> String {
    let page = browser.get(app.url("/login")).send().await.unwrap();
    let token = extract_csrf(&page.text().await.unwrap()).unwrap();
    let response = browser
        .post(app.url("/login"))
        .form(&[
            ("username", "ada"),
            ("password", PASSWORD),
            ("csrf_token", &token),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "signed in");
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok())
        .find_map(|c| c.strip_prefix("stowage_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// After an accepted upload: the object is under a key the server made, and the download name
/// has no path, control or direction-override character in it.
async fn assert_stored_safely(app: &TestApp, name: &str) {
    let profile = app.ada_profile().await;
    if let Some(key) = &profile.resume_key {
        let rest = key
            .strip_prefix(&format!("resumes/{}/", profile.id))
            .unwrap_or_else(|| panic!("{name}: key {key}"));
        let stem = rest.strip_suffix(".pdf").unwrap();
        assert!(
            stem.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: key {key}"
        );
        let filename = profile.resume_filename.clone().unwrap();
        assert!(
            !filename.contains(['/', '\\', '\0', '\u{202E}'])
                && !filename.chars().any(char::is_control)
                && filename.chars().count() <= 200
                && !filename.starts_with('.'),
            "{name}: {filename:?}"
        );
        // The download carries it as an attachment's name, quoted.
        let response = app.get(&format!("/resume/{}", profile.id)).await;
        assert_eq!(response.status(), StatusCode::FOUND, "{name}");
        let target = response.headers()["location"].to_str().unwrap().to_owned();
        let download = app.fetch(&target).await;
        assert_eq!(download.status(), StatusCode::OK, "{name}");
        let disposition = download.headers()["content-disposition"].to_str().unwrap();
        assert!(
            disposition.starts_with("attachment"),
            "{name}: {disposition}"
        );
    }
    if let Some(key) = &profile.avatar_key {
        assert!(
            key.starts_with("avatars/") && !key.contains(".."),
            "{name}: {key}"
        );
    }
}

/// How many cases run on `stack`.
fn cases_on(stack: Stack) -> usize {
    cases(stack)
        .iter()
        .filter(|c| stack == Stack::SqliteFilesystem || !c.filesystem_only)
        .count()
}

/// The README quotes the corpus's size as this file counts it.
#[test]
fn the_readme_counts_the_corpus_as_it_is() {
    let quoted = format!(
        "{} cases ({} on the S3 stack)",
        cases_on(Stack::SqliteFilesystem),
        cases_on(Stack::PostgresS3)
    );
    let readme = include_str!("../../README.md");
    assert!(readme.contains(&quoted), "the README should say {quoted:?}");
}

#[tokio::test]
async fn hostile_input_is_refused_with_a_message_and_changes_nothing() {
    for stack in STACKS {
        let options = AppOptions {
            vars: vec![
                ("RESUME_MAX_BYTES", RESUME_LIMIT.to_string()),
                ("AVATAR_MAX_BYTES", AVATAR_LIMIT.to_string()),
                ("UPLOAD_TIMEOUT_SECS", "2".into()),
                // Every request reads the database, not a cache.
                ("CACHE_TTL_SECS", "0".into()),
            ],
        };
        let app = member_app(stack, options).await;
        // A resume to protect: refused cases must not disturb it.
        let (status, _, body) = run(&app, &resume("application/pdf", pdf())).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{stack:?}: {body}");
        let count = cases_on(stack);
        assert!(count >= 45, "{stack:?}: {count} cases");
        let cases = cases(stack);
        let mut failures = Vec::new();
        for case in cases {
            if case.filesystem_only && stack != Stack::SqliteFilesystem {
                continue;
            }
            let name = case.name;
            let before = snapshot(&app).await;
            let (status, location, body) = run(&app, &case.send).await;
            let short = |body: &str| body.chars().take(600).collect::<String>();
            let mut fail = |why: String| failures.push(format!("{stack:?} / {name}: {why}"));
            match case.expect {
                Expect::Refused(expected, message) => {
                    if status != expected || !body.contains(message) {
                        fail(format!(
                            "expected {expected} saying {message:?}, got {status}: {}",
                            short(&body)
                        ));
                    } else if snapshot(&app).await != before {
                        fail("something changed".into());
                    }
                }
                Expect::Redirected(expected, target) => {
                    if status != expected || location != target {
                        fail(format!(
                            "expected {expected} to {target}, got {status} to {location}"
                        ));
                    } else if snapshot(&app).await != before {
                        fail("something changed".into());
                    }
                }
                Expect::StoredSafely => {
                    if status != StatusCode::SEE_OTHER {
                        fail(format!("expected 303, got {status}: {}", short(&body)));
                        continue;
                    }
                    assert_stored_safely(&app, name).await;
                    let after = snapshot(&app).await;
                    let stored = app.media_objects().await;
                    if after.users != before.users || stored != app.media_references().await {
                        fail(format!(
                            "every stored object is referenced, nothing else: {stored:?} in {after:?}"
                        ));
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        // The signed-in member is still signed in and their page still works.
        assert_eq!(app.get("/profile/edit").await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn expired_or_edited_signed_media_urls_are_refused() {
    let app = member_app(Stack::SqliteFilesystem, AppOptions::default()).await;
    let (status, _, _) = run(&app, &resume("application/pdf", pdf())).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let profile = app.ada_profile().await;
    let key = profile.resume_key.unwrap();
    let signed = app
        .storages()
        .private
        .signed_url(
            &key,
            &stowage::storage::SignedUrlOptions {
                // Expiries are whole seconds: 3 s leaves at least 2 for the first fetch.
                ttl: Duration::from_secs(3),
                download_filename: Some("cv.pdf".into()),
                content_type: Some("application/pdf".into()),
            },
        )
        .unwrap();
    assert_eq!(app.fetch(&signed).await.status(), StatusCode::OK);
    let before = snapshot(&app).await;

    // The expiry pushed a year on: the signature no longer matches.
    let expires: u64 = signed
        .split("expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let edited = signed.replace(
        &format!("expires={expires}"),
        &format!("expires={}", expires + 31_536_000),
    );
    let response = app.fetch(&edited).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.unwrap().contains("not valid"));

    // Replayed once expired.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let response = app.fetch(&signed).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.unwrap().contains("expired"));
    assert_eq!(snapshot(&app).await, before);
}
