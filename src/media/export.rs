//! A member's data as one ZIP, written as it is sent: each file's bytes go from storage to the
//! response as they arrive, with nothing on the ephemeral disk and no file held in memory
//! whole. Entries are stored, not compressed (PDFs and images already are); each is followed
//! by a data descriptor, so its size and CRC need not be known before it starts.
//!
//! The download log goes in the same way ([`downloads_json`]): read page by page and written
//! as it is read, so that a member with a million downloads costs the process a page, not the
//! log.
//!
//! A storage or database error midway ends the response with an error rather than a ZIP that
//! looks whole: the client sees a failed download, never a truncated archive.

use std::io;

use async_zip::base::write::ZipFileWriter;
use async_zip::{Compression, ZipDateTime, ZipDateTimeBuilder, ZipEntryBuilder};
use futures_lite::AsyncWriteExt;
use futures_util::StreamExt;
use tokio::io::DuplexStream;
use tokio_util::io::ReaderStream;

use crate::db::Database;
use crate::db::downloads::{ExportedDownload, Side};
use crate::storage::ByteStream;

/// One file of the archive.
pub struct ExportFile {
    /// Its path in the archive (`/`-separated).
    pub name: String,
    pub content: ExportContent,
}

pub enum ExportContent {
    /// Made for the export (JSON).
    Bytes(Vec<u8>),
    /// Read (from storage, from the database) as it is written.
    Stream(ByteStream<'static>),
}

/// How much of the archive may wait between the writer and the response.
const PIPE: usize = 64 * 1024;

/// The archive of `files`, in order, each dated `modified`, as a stream of its bytes.
pub fn zip_stream(files: Vec<ExportFile>, modified: time::OffsetDateTime) -> ByteStream<'static> {
    let (writer, reader) = tokio::io::duplex(PIPE);
    let task = tokio::spawn(write_zip(writer, files, zip_date(modified)));
    let end = futures_util::stream::once(async move {
        match task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Err(e)),
            Err(e) => Some(Err(io::Error::other(e))),
        }
    })
    .filter_map(std::future::ready);
    Box::pin(ReaderStream::new(reader).chain(end))
}

async fn write_zip(
    writer: DuplexStream,
    files: Vec<ExportFile>,
    date: ZipDateTime,
) -> io::Result<()> {
    let mut zip = ZipFileWriter::with_tokio(writer);
    for file in files {
        let entry = ZipEntryBuilder::new(file.name.into(), Compression::Stored)
            .last_modification_date(date)
            .unix_permissions(0o644);
        match file.content {
            ExportContent::Bytes(bytes) => zip
                .write_entry_whole(entry, &bytes)
                .await
                .map_err(zip_error)?,
            ExportContent::Stream(mut body) => {
                let mut entry = zip.write_entry_stream(entry).await.map_err(zip_error)?;
                while let Some(chunk) = body.next().await {
                    entry.write_all(&chunk?).await?;
                }
                entry.close().await.map_err(zip_error)?;
            }
        }
    }
    zip.close().await.map_err(zip_error)?;
    Ok(())
}

/// `downloads.json`: the downloads of profile `profile_id`'s resume (`of_my_resume`) and those
/// member `member_id` made (`by_me`), oldest first, one object a line, read from the database
/// a page at a time as the archive is written.
pub fn downloads_json(db: Database, profile_id: i64, member_id: i64) -> ByteStream<'static> {
    /// Where the writing is.
    enum Step {
        Start,
        Page(Side, Option<(i64, i64)>, bool),
        Done,
    }
    let pages = futures_util::stream::unfold(Step::Start, move |step| {
        let db = db.clone();
        async move {
            let (side, after, first) = match step {
                Step::Start => {
                    let open = bytes::Bytes::from_static(b"{\n\"of_my_resume\": [");
                    return Some((Ok(open), Step::Page(Side::Of, None, true)));
                }
                Step::Page(side, after, first) => (side, after, first),
                Step::Done => return None,
            };
            let id = match side {
                Side::Of => profile_id,
                Side::By => member_id,
            };
            let (page, next) = match db.downloads_page(side, id, after).await {
                Ok(page) => page,
                Err(e) => return Some((Err(io::Error::other(e)), Step::Done)),
            };
            let mut out = Vec::with_capacity(page.len() * 128);
            for (i, download) in page.iter().enumerate() {
                if !(first && i == 0) {
                    out.push(b',');
                }
                out.extend_from_slice(b"\n  ");
                let written = serde_json::to_writer(&mut out, &download_json(side, download));
                if let Err(e) = written {
                    return Some((Err(io::Error::other(e)), Step::Done));
                }
            }
            let step = match (next, side) {
                (Some(next), _) => Step::Page(side, Some(next), first && page.is_empty()),
                (None, Side::Of) => {
                    out.extend_from_slice(b"\n],\n\"by_me\": [");
                    Step::Page(Side::By, None, true)
                }
                (None, Side::By) => {
                    out.extend_from_slice(b"\n]\n}\n");
                    Step::Done
                }
            };
            Some((Ok(bytes::Bytes::from(out)), step))
        }
    });
    Box::pin(pages)
}

/// One download as `downloads.json` shows it.
fn download_json(side: Side, d: &ExportedDownload) -> serde_json::Value {
    let at = time::OffsetDateTime::from_unix_timestamp(d.download.at)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    match side {
        Side::Of => serde_json::json!({
            "who": d.download.who,
            "through": if d.download.share_link_id.is_some() { "share link" } else { "member" },
            "at": at,
            "request_id": d.download.request_id,
        }),
        Side::By => serde_json::json!({
            "whose": d.owner,
            "at": at,
            "request_id": d.download.request_id,
        }),
    }
}

fn zip_error(err: async_zip::error::ZipError) -> io::Error {
    match err {
        async_zip::error::ZipError::UpstreamReadError(e) => e,
        other => io::Error::other(other),
    }
}

/// A ZIP entry's date (MS-DOS time, two-second steps, from 1980).
fn zip_date(at: time::OffsetDateTime) -> ZipDateTime {
    ZipDateTimeBuilder::new()
        .year(at.year().max(1980))
        .month(u8::from(at.month()).into())
        .day(at.day().into())
        .hour(at.hour().into())
        .minute(at.minute().into())
        .second(at.second().into())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(stream: ByteStream<'static>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut stream = stream;
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    fn object(chunks: Vec<io::Result<bytes::Bytes>>) -> ByteStream<'static> {
        Box::pin(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn files_are_written_whole_and_named_as_given() {
        let at = time::macros::datetime!(2026-12-03 10:30:00 UTC);
        let pdf = b"%PDF-1.4 a resume".repeat(10_000);
        let files = vec![
            ExportFile {
                name: "profile.json".into(),
                content: ExportContent::Bytes(b"{}".to_vec()),
            },
            ExportFile {
                name: "resume/Zoë CV.pdf".into(),
                content: ExportContent::Stream(object(
                    pdf.chunks(7_000)
                        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                        .collect(),
                )),
            },
        ];
        let zip = collect(zip_stream(files, at)).await.unwrap();
        assert!(zip.starts_with(b"PK\x03\x04"));
        // Stored entries: the bytes are in the archive as they are.
        assert!(zip.windows(pdf.len()).any(|w| w == pdf.as_slice()));
        assert!(
            zip.windows("resume/Zoë CV.pdf".len())
                .any(|w| w == "resume/Zoë CV.pdf".as_bytes())
        );
        // The end of central directory record names two entries.
        let end = zip.windows(4).rposition(|w| w == b"PK\x05\x06").unwrap();
        assert_eq!(u16::from_le_bytes([zip[end + 10], zip[end + 11]]), 2);
    }

    #[tokio::test]
    async fn a_storage_error_midway_fails_the_stream() {
        let files = vec![ExportFile {
            name: "resume/cv.pdf".into(),
            content: ExportContent::Stream(object(vec![
                Ok(bytes::Bytes::from_static(b"%PDF-")),
                Err(io::Error::other("storage went away")),
            ])),
        }];
        let at = time::OffsetDateTime::UNIX_EPOCH;
        let err = collect(zip_stream(files, at)).await.unwrap_err();
        assert!(err.to_string().contains("storage went away"), "{err}");
    }
}
