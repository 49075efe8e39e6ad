//! What members upload, checked by its bytes and made safe before it is stored.
//!
//! - Avatars: PNG, JPEG, WebP or GIF by their magic bytes (never by name or declared type),
//!   bounded in bytes and pixels, turned upright by their EXIF orientation, then re-encoded so
//!   no metadata (EXIF, GPS) survives, fitted within each of [`AVATAR_SIDES`].
//! - Resumes: streamed through [`PdfCheck`], which refuses anything that does not start with
//!   `%PDF-` or end with `startxref` and an `%%EOF` trailer, or that passes the size limit, while
//!   the bytes flow to storage: the storage then discards the partial object.

use std::io::Cursor;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// Largest avatar accepted, in pixels (width × height).
pub const AVATAR_MAX_PIXELS: u64 = 40_000_000;
/// How far from the end `startxref` and the `%%EOF` trailer may stand (PDF readers look at the last 1 KiB).
pub const PDF_TRAILER_WINDOW: usize = 1024;

/// Why an upload was refused; each maps to a status and a sentence a person understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("The file is larger than the limit of {limit}.")]
    TooLarge { limit: String },
    #[error("The image is larger than 40 megapixels.")]
    TooManyPixels,
    #[error("{0}")]
    WrongType(&'static str),
    #[error("The file is empty.")]
    Empty,
    #[error("{0}")]
    Corrupt(&'static str),
    #[error("The file did not arrive in storage. Please upload it again.")]
    NotReceived,
    /// A direct upload whose object is not the file announced when it was issued (another
    /// length or SHA-256): corrupted on the way, or replaced.
    #[error(
        "The file in storage is not the one you chose (its size or SHA-256 differs). Please upload it again."
    )]
    NotAnnounced,
}

impl UploadError {
    pub fn too_large(limit_bytes: u64) -> Self {
        UploadError::TooLarge {
            limit: human_size(limit_bytes),
        }
    }

    /// Finds an `UploadError` carried inside an I/O error (from a checked stream).
    pub fn from_io(err: &std::io::Error) -> Option<Self> {
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<UploadError>())
            .cloned()
    }

    fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

/// `1.5 MiB`, `300 KiB`, `12 bytes`.
pub fn human_size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB {
        let tenths = bytes * 10 / MIB;
        if tenths.is_multiple_of(10) {
            format!("{} MiB", tenths / 10)
        } else {
            format!("{}.{} MiB", tenths / 10, tenths % 10)
        }
    } else if bytes >= KIB {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// The sides (px) an avatar is stored at, smallest first: the pages show avatars at 96 CSS
/// px, so 96 and, on a 2x screen, 192; 512 is the largest kept.
pub const AVATAR_SIDES: [u32; 3] = [96, 192, 512];

/// An avatar ready to store: its image at each of [`AVATAR_SIDES`] (never larger than the
/// upload), in that order.
#[derive(Debug, Clone)]
pub struct Avatar {
    pub sizes: Vec<(u32, Vec<u8>)>,
    pub content_type: &'static str,
    pub extension: &'static str,
}

impl Avatar {
    /// The sides stored, as the profile records them ("96 192 512").
    pub fn sides(&self) -> String {
        let sides: Vec<String> = self
            .sizes
            .iter()
            .map(|(side, _)| side.to_string())
            .collect();
        sides.join(" ")
    }
}

/// Checks and re-encodes an avatar: upright by its EXIF orientation, then at each of
/// [`AVATAR_SIDES`], with no metadata. CPU-heavy: call it from `spawn_blocking`.
pub fn process_avatar(bytes: &[u8], max_bytes: u64) -> Result<Avatar, UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    if bytes.len() as u64 > max_bytes {
        return Err(UploadError::too_large(max_bytes));
    }
    let format = image::guess_format(bytes)
        .map_err(|_| UploadError::WrongType("Avatars must be PNG, JPEG, WebP or GIF images."))?;
    if !matches!(
        format,
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Gif
    ) {
        return Err(UploadError::WrongType(
            "Avatars must be PNG, JPEG, WebP or GIF images.",
        ));
    }
    let corrupt =
        UploadError::Corrupt("The image could not be read: it may be damaged or truncated.");
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|_| corrupt.clone())?;
    if u64::from(width) * u64::from(height) > AVATAR_MAX_PIXELS {
        return Err(UploadError::TooManyPixels);
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(AVATAR_MAX_PIXELS * 4 + 64 * 1024 * 1024);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|_| corrupt.clone())?;
    // A phone stores its photo as the sensor saw it and says in EXIF how to turn it; the
    // metadata is dropped below, so the turn is made here first. An unreadable EXIF block
    // leaves the image as it is.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|_| corrupt)?;
    // The decoded image is the one full-size buffer, within the limit above: it is first
    // fitted within the largest side (which a turn does not change), and only that is turned
    // and converted. Turning or converting it at full size made a second full-size copy the
    // limit never counted.
    let largest = AVATAR_SIDES[AVATAR_SIDES.len() - 1];
    if image.width() > largest || image.height() > largest {
        image = image.resize(largest, largest, image::imageops::FilterType::Lanczos3);
    }
    image.apply_orientation(orientation);
    if format == ImageFormat::Jpeg {
        image = DynamicImage::ImageRgb8(image.into_rgb8());
    }
    let (content_type, extension, encoding) = if format == ImageFormat::Jpeg {
        ("image/jpeg", "jpg", ImageFormat::Jpeg)
    } else {
        ("image/png", "png", ImageFormat::Png)
    };
    // Largest first, each made from the one before (a smaller source, the same filter).
    let mut sizes = Vec::with_capacity(AVATAR_SIDES.len());
    for side in AVATAR_SIDES.into_iter().rev() {
        if image.width() > side || image.height() > side {
            image = image.resize(side, side, image::imageops::FilterType::Lanczos3);
        }
        // Re-encoding from pixels drops every metadata chunk of the original.
        let mut out = Cursor::new(Vec::new());
        image
            .write_to(&mut out, encoding)
            .map_err(|_| UploadError::Corrupt("The image could not be converted."))?;
        sizes.push((side, out.into_inner()));
    }
    sizes.reverse();
    Ok(Avatar {
        sizes,
        content_type,
        extension,
    })
}

/// Checks a PDF as it streams: `%PDF-` first, `startxref` and `%%EOF` within the last KiB, at
/// most `max` bytes. A failed check ends the stream with an error carrying an [`UploadError`],
/// so the storage discards what it had written.
pub struct PdfCheck {
    max: u64,
    seen: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl PdfCheck {
    /// A check for files up to `max` bytes.
    pub fn new(max: u64) -> Self {
        Self {
            max,
            seen: 0,
            head: Vec::with_capacity(5),
            tail: Vec::with_capacity(PDF_TRAILER_WINDOW * 2),
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        self.seen += chunk.len() as u64;
        if self.seen > self.max {
            return Err(UploadError::too_large(self.max));
        }
        if self.head.len() < 5 {
            let take = (5 - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            if !b"%PDF-".starts_with(&self.head) {
                return Err(not_a_pdf());
            }
        }
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > PDF_TRAILER_WINDOW {
            let cut = self.tail.len() - PDF_TRAILER_WINDOW;
            self.tail.drain(..cut);
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), UploadError> {
        check_pdf(self.seen, self.max, &self.head, &self.tail)
    }

    /// Wraps `body` in the check.
    pub fn wrap<'a, S, E>(self, body: S) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'a
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'a,
        E: Into<std::io::Error> + 'a,
    {
        futures_util::stream::unfold(Some((body, self)), |state| async move {
            let (mut body, mut check) = state?;
            match body.next().await {
                Some(Ok(chunk)) => match check.feed(&chunk) {
                    Ok(()) => Some((Ok(chunk), Some((body, check)))),
                    Err(e) => Some((Err(e.into_io()), None)),
                },
                Some(Err(e)) => Some((Err(e.into()), None)),
                None => match check.finish() {
                    Ok(()) => None,
                    Err(e) => Some((Err(e.into_io()), None)),
                },
            }
        })
    }
}

/// The PDF check of a whole file of `size` bytes from its first bytes (`head`, at least 5 when
/// the file has them) and its last [`PDF_TRAILER_WINDOW`] bytes (`tail`): what [`PdfCheck`]
/// decides once a stream ends, and what a direct upload is checked against in storage.
pub fn check_pdf(size: u64, max: u64, head: &[u8], tail: &[u8]) -> Result<(), UploadError> {
    if size == 0 {
        return Err(UploadError::Empty);
    }
    if size > max {
        return Err(UploadError::too_large(max));
    }
    if !head.starts_with(b"%PDF-") {
        return Err(not_a_pdf());
    }
    if !tail.windows(5).any(|w| w == b"%%EOF") {
        return Err(UploadError::Corrupt(
            "The PDF is incomplete: it has no end-of-file marker. It may be truncated.",
        ));
    }
    // Every PDF ends by pointing at its cross-reference table; a PDF header and an end
    // marker around something else (an HTML page) is not a PDF.
    if !tail.windows(9).any(|w| w == b"startxref") {
        return Err(UploadError::Corrupt(
            "This file is not a valid PDF: it has no cross-reference table. It may be damaged, \
             or another kind of file renamed.",
        ));
    }
    Ok(())
}

fn not_a_pdf() -> UploadError {
    UploadError::WrongType("Resumes must be PDF files.")
}

/// The client's filename made safe to keep as metadata: no directories, no control or
/// bidirectional-override characters, at most 200 characters. Never used as a path.
pub fn clean_filename(raw: &str, fallback: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(
                    *c,
                    '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
                )
        })
        .take(200)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    if cleaned.is_empty() {
        fallback.to_owned()
    } else {
        cleaned.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn check(chunks: Vec<&'static [u8]>, max: u64) -> Result<u64, UploadError> {
        let body = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        let mut checked = Box::pin(PdfCheck::new(max).wrap(body));
        // What passed the check, as a storage would count it.
        let mut size = 0;
        while let Some(item) = checked.next().await {
            match item {
                Ok(chunk) => size += chunk.len() as u64,
                Err(e) => return Err(UploadError::from_io(&e).expect("an upload error")),
            }
        }
        Ok(size)
    }

    #[tokio::test]
    async fn a_pdf_passes_in_any_chunking() {
        assert_eq!(
            check(vec![b"%P", b"DF-1.4 body ", b"startxref\n9\n%%EOF\n"], 100).await,
            Ok(32)
        );
    }

    #[tokio::test]
    async fn non_pdfs_empty_truncated_and_oversized_files_are_refused() {
        assert!(matches!(
            check(vec![b"<html>%PDF-"], 100).await,
            Err(UploadError::WrongType(_))
        ));
        assert_eq!(check(vec![], 100).await, Err(UploadError::Empty));
        assert!(matches!(
            check(vec![b"%PDF-1.4 no trailer"], 100).await,
            Err(UploadError::Corrupt(_))
        ));
        // A PDF header and an end marker around an HTML page.
        assert!(matches!(
            check(
                vec![b"%PDF-1.4\n<html><script>x</script></html>\n%%EOF\n"],
                100
            )
            .await,
            Err(UploadError::Corrupt(_))
        ));
        assert!(matches!(
            check(vec![b"%PDF-1.4 ", b"%%EOF"], 10).await,
            Err(UploadError::TooLarge { .. })
        ));
        assert!(matches!(
            check(vec![b"%PD"], 100).await,
            Err(UploadError::WrongType(_))
        ));
    }

    #[test]
    fn filenames_lose_paths_controls_and_direction_overrides() {
        assert_eq!(clean_filename("../../etc/passwd", "x"), "passwd");
        assert_eq!(clean_filename("..\\..\\cv.pdf", "x"), "cv.pdf");
        assert_eq!(clean_filename("C:\\Users\\ada\\CV.pdf", "x"), "CV.pdf");
        assert_eq!(clean_filename("evil\u{202e}fdp.exe", "x"), "evilfdp.exe");
        assert_eq!(clean_filename("a\0b\r\n.pdf", "x"), "ab.pdf");
        assert_eq!(clean_filename("", "resume.pdf"), "resume.pdf");
        assert_eq!(clean_filename("...", "resume.pdf"), "resume.pdf");
        assert_eq!(
            clean_filename(&"a".repeat(10_000), "x").chars().count(),
            200
        );
        assert_eq!(clean_filename("Zoë Résumé.pdf", "x"), "Zoë Résumé.pdf");
    }

    #[test]
    fn avatars_are_recognised_by_their_bytes() {
        let mut png = Cursor::new(Vec::new());
        image::RgbImage::new(1000, 10)
            .write_to(&mut png, ImageFormat::Png)
            .unwrap();
        let avatar = process_avatar(png.get_ref(), 1 << 20).unwrap();
        assert_eq!(avatar.content_type, "image/png");
        assert_eq!(avatar.sides(), "96 192 512");
        let sides: Vec<(u32, u32)> = avatar
            .sizes
            .iter()
            .map(|(_, bytes)| {
                let decoded = image::load_from_memory(bytes).unwrap();
                (decoded.width(), decoded.height())
            })
            .collect();
        assert_eq!(sides, [(96, 1), (192, 2), (512, 5)]);

        let svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>";
        assert!(matches!(
            process_avatar(svg, 1 << 20),
            Err(UploadError::WrongType(_))
        ));
        assert_eq!(
            process_avatar(b"", 1 << 20).unwrap_err(),
            UploadError::Empty
        );
        let truncated = &png.get_ref()[..png.get_ref().len() / 2];
        assert!(matches!(
            process_avatar(truncated, 1 << 20),
            Err(UploadError::Corrupt(_))
        ));
        assert!(matches!(
            process_avatar(png.get_ref(), 10),
            Err(UploadError::TooLarge { .. })
        ));
    }

    /// `width`×`height` RGB pixels, each different, encoded as `format` with an EXIF block
    /// that says `orientation` (1–8).
    fn photo(format: ImageFormat, width: u32, height: u32, orientation: u8) -> Vec<u8> {
        use image::ImageEncoder;
        // A little-endian TIFF header and one IFD entry: Orientation (0x0112), SHORT, 1.
        let mut exif = b"II\x2a\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0".to_vec();
        exif.extend_from_slice(&[orientation, 0, 0, 0, 0, 0, 0, 0]);
        let pixels = test_pattern(width, height);
        let mut out = Vec::new();
        let (w, h, color) = (width, height, image::ExtendedColorType::Rgb8);
        match format {
            ImageFormat::Png => {
                let mut encoder = image::codecs::png::PngEncoder::new(&mut out);
                encoder.set_exif_metadata(exif).unwrap();
                encoder.write_image(pixels.as_raw(), w, h, color).unwrap();
            }
            _ => {
                let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 100);
                encoder.set_exif_metadata(exif).unwrap();
                encoder.write_image(pixels.as_raw(), w, h, color).unwrap();
            }
        }
        out
    }

    /// Blocks of 8×8 pixels, each block its own colour (so JPEG keeps them apart).
    fn test_pattern(width: u32, height: u32) -> image::RgbImage {
        image::RgbImage::from_fn(width, height, |x, y| {
            let (bx, by) = ((x / 8 % 4) as u8, (y / 8 % 4) as u8);
            image::Rgb([bx * 60, by * 60, 255 - bx * 30 - by * 30])
        })
    }

    #[test]
    fn every_exif_orientation_is_applied_before_the_metadata_goes() {
        use image::imageops::{flip_horizontal, flip_vertical, rotate90, rotate180, rotate270};
        let raw = test_pattern(32, 16);
        // What a viewer shows for each EXIF orientation, made with plain turns and flips.
        let upright: [image::RgbImage; 8] = [
            raw.clone(),
            flip_horizontal(&raw),
            rotate180(&raw),
            flip_vertical(&raw),
            flip_horizontal(&rotate90(&raw)),
            rotate90(&raw),
            flip_horizontal(&rotate270(&raw)),
            rotate270(&raw),
        ];
        for (orientation, expected) in (1..=8).zip(upright) {
            for format in [ImageFormat::Png, ImageFormat::Jpeg] {
                let avatar = process_avatar(&photo(format, 32, 16, orientation), 1 << 20).unwrap();
                for (side, bytes) in &avatar.sizes {
                    assert!(
                        !bytes.windows(4).any(|w| w == b"Exif" || w == b"eXIf"),
                        "{format:?} {orientation}: EXIF kept at {side}"
                    );
                    let got = image::load_from_memory(bytes).unwrap().to_rgb8();
                    assert_eq!(
                        got.dimensions(),
                        expected.dimensions(),
                        "{format:?} {orientation}"
                    );
                    // The centre of each block, within JPEG's error.
                    for (x, y, want) in expected.enumerate_pixels() {
                        if x % 8 != 4 || y % 8 != 4 {
                            continue;
                        }
                        let have = got.get_pixel(x, y);
                        let off = (0..3).map(|c| have[c].abs_diff(want[c])).max().unwrap();
                        assert!(
                            off <= 12,
                            "{format:?} {orientation} at ({x}, {y}): {have:?} != {want:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_large_turned_photo_is_fitted_before_it_is_turned() {
        // 1200×600 as the sensor saw it, to be turned a quarter (orientation 6): upright it
        // is 600×1200, so 256×512 at the largest side.
        let avatar = process_avatar(&photo(ImageFormat::Jpeg, 1200, 600, 6), 8 << 20).unwrap();
        let sides: Vec<(u32, u32)> = avatar
            .sizes
            .iter()
            .map(|(_, bytes)| {
                let image = image::load_from_memory(bytes).unwrap();
                (image.width(), image.height())
            })
            .collect();
        assert_eq!(sides, [(48, 96), (96, 192), (256, 512)]);
    }

    #[test]
    fn sizes_read_like_a_person_writes_them() {
        assert_eq!(human_size(5 * 1024 * 1024), "5 MiB");
        assert_eq!(human_size(1536 * 1024), "1.5 MiB");
        assert_eq!(human_size(2048), "2 KiB");
        assert_eq!(human_size(7), "7 bytes");
    }
}
