// Sends a resume straight to S3 with a presigned POST or PUT (whichever the server issues),
// then asks the app to confirm it, so a large file never passes through the app (see
// src/web/direct_upload.rs). The file's SHA-256 is computed here first and signed into the
// upload, so the store (and the app, at confirm) refuses anything else. The edit page loads
// this only when storage is on S3; without it, without Web Crypto (a page not served over
// HTTPS), or when no upload can be had or the bucket cannot be reached, the form posts the
// file to the app as usual.
"use strict";

// Standard base64 of the file's SHA-256, as S3's x-amz-checksum-sha256 carries it.
const sha256Base64 = async (file) => {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()));
  return btoa(String.fromCharCode(...digest));
};

// Sends the file as the server issued it: a form POST (the fields, then the file, last) or a
// PUT of the file with the signed headers.
const send = (upload, file) => {
  if (upload.method === "PUT") {
    return fetch(upload.url, { method: "PUT", headers: upload.headers, body: file });
  }
  const body = new FormData();
  for (const [name, value] of Object.entries(upload.fields)) body.append(name, value);
  body.append("file", file); // S3 wants the file last
  return fetch(upload.url, { method: "POST", body });
};

document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-upload-url]");
  if (!form || !window.fetch || !window.FormData || !(window.crypto && crypto.subtle)) return;
  const input = form.querySelector('input[type="file"]');
  const button = form.querySelector('button[type="submit"]');
  const status = form.querySelector(".upload-status");

  const say = (message, isError) => {
    status.textContent = message;
    status.className = isError ? "upload-status error" : "upload-status muted";
    status.hidden = false;
  };

  // The message of a JSON error answer, or a sentence about its status.
  const reason = async (response, fallback) => {
    try {
      const body = await response.json();
      if (body && body.error) return body.error;
    } catch (_) {
      // not JSON: an error page
    }
    return `${fallback} (status ${response.status}).`;
  };

  form.addEventListener("submit", async (event) => {
    const file = input.files && input.files[0];
    if (!file) return;
    event.preventDefault();
    button.disabled = true;
    try {
      say("Preparing…", false);
      const query = new URLSearchParams({ size: file.size, sha256: await sha256Base64(file) });
      const issued = await fetch(`${form.dataset.uploadUrl}?${query}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (issued.status === 413 || issued.status === 422) {
        throw new Error(await reason(issued, "The file was refused"));
      }
      if (!issued.ok) {
        form.submit(); // no direct upload here: send the file through the app
        return;
      }
      const upload = await issued.json();
      say("Uploading…", false);
      let stored;
      try {
        stored = await send(upload, file);
      } catch (_) {
        // The bucket did not answer, or its CORS rules do not admit this site: send the file
        // through the app instead. The issued key is swept later.
        form.submit();
        return;
      }
      if (!stored.ok) {
        throw new Error(`Storage refused the file (status ${stored.status}). Please try again.`);
      }
      say("Checking…", false);
      const confirmed = await fetch(form.dataset.confirmUrl, {
        method: "POST",
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        body: new URLSearchParams({
          csrf_token: form.elements.csrf_token.value,
          key: upload.key,
          filename: file.name,
        }),
      });
      if (!confirmed.ok) throw new Error(await reason(confirmed, "The upload could not be saved"));
      const answer = await confirmed.json();
      window.location.assign(answer.redirect);
    } catch (error) {
      say(error.message || "The upload failed. Please try again.", true);
      button.disabled = false;
    }
  });
});
