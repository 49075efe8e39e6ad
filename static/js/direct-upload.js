// Sends a resume straight to S3 with a presigned POST, then asks the app to confirm it, so a
// large file never passes through the app (see src/web/direct_upload.rs). The edit page loads
// this only when storage is on S3; without it, or when no upload form can be had or the bucket
// cannot be reached, the form posts the file to the app as usual.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-upload-url]");
  if (!form || !window.fetch || !window.FormData) return;
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
      const issued = await fetch(form.dataset.uploadUrl, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!issued.ok) {
        form.submit(); // no direct upload here: send the file through the app
        return;
      }
      const upload = await issued.json();
      if (file.size > upload.max_bytes) {
        throw new Error(`The file is larger than the limit of ${form.dataset.limit}.`);
      }
      say("Uploading…", false);
      const body = new FormData();
      for (const [name, value] of Object.entries(upload.fields)) body.append(name, value);
      body.append("file", file); // S3 wants the file last
      let stored;
      try {
        stored = await fetch(upload.url, { method: "POST", body });
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
