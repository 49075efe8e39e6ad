//! Photo-like JPEGs for the benchmarks, as phones upload them: `photos DIR N [WIDTH HEIGHT]`
//! writes `DIR/1.jpg` … `DIR/N.jpg` (default 1600×1200, quality 90), each its own smooth
//! background, a lit oval and sensor noise: what compresses like a photograph does, unlike a
//! flat test pattern.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{ImageEncoder, Rgb, RgbImage};

/// A small deterministic generator (xorshift), so every run writes the same files.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn photo(n: u64, width: u32, height: u32) -> RgbImage {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ n.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let tint = [
        (n * 53 % 200) as f32,
        (n * 97 % 200) as f32,
        (n * 29 % 200) as f32,
    ];
    let (cx, cy) = (width as f32 / 2.0, height as f32 * 0.45);
    let (rx, ry) = (width as f32 * 0.22, height as f32 * 0.32);
    RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let d = ((x as f32 - cx) / rx).powi(2) + ((y as f32 - cy) / ry).powi(2);
        let lit = if d < 1.0 { 90.0 * (1.0 - d) } else { 0.0 };
        let grain = (noise.next() % 24) as f32 - 12.0;
        let channel = |c: usize, slope: f32| {
            (tint[c] * 0.6 + 60.0 * slope + lit + grain).clamp(0.0, 255.0) as u8
        };
        Rgb([channel(0, fx), channel(1, fy), channel(2, 1.0 - fx * fy)])
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, count) = match args.as_slice() {
        [dir, count, ..] => (std::path::PathBuf::from(dir), count.parse::<u64>()?),
        _ => return Err("usage: photos DIR N [WIDTH HEIGHT]".into()),
    };
    let width = args.get(2).map_or(Ok(1600), |w| w.parse())?;
    let height = args.get(3).map_or(Ok(1200), |h| h.parse())?;
    std::fs::create_dir_all(&dir)?;
    for n in 1..=count {
        let image = photo(n, width, height);
        let mut out = Cursor::new(Vec::new());
        JpegEncoder::new_with_quality(&mut out, 90).write_image(
            image.as_raw(),
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )?;
        std::fs::write(dir.join(format!("{n}.jpg")), out.into_inner())?;
    }
    Ok(())
}
