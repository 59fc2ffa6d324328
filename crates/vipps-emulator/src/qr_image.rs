//! QR images: SVG through the `qrcode` renderer, PNG drawn from its module matrix.

use qrcode::render::svg;
use qrcode::{Color, EcLevel, QrCode};

/// Image side in pixels when no `Size` is given (the guide: 800x800).
pub const DEFAULT_SIZE: u32 = 800;
/// The `Size` header's range.
pub const SIZES: std::ops::RangeInclusive<u32> = 100..=2000;
/// Light modules around the code, as the QR standard asks.
const QUIET_ZONE: usize = 4;

fn encode(content: &str) -> Result<QrCode, String> {
    QrCode::with_error_correction_level(content.as_bytes(), EcLevel::M)
        .map_err(|e| format!("cannot encode the QR content: {e}"))
}

/// An SVG document of at least `size` x `size` pixels.
pub fn svg(content: &str, size: u32) -> Result<String, String> {
    Ok(encode(content)?
        .render::<svg::Color>()
        .quiet_zone(true)
        .min_dimensions(size, size)
        .build())
}

/// An 8-bit greyscale PNG of exactly `size` x `size` pixels.
pub fn png(content: &str, size: u32) -> Result<Vec<u8>, String> {
    let code = encode(content)?;
    let width = code.width();
    let colors = code.to_colors();
    let total = width + 2 * QUIET_ZONE;
    let side = usize::try_from(size).map_err(|e| e.to_string())?;
    // Pixel -> module by proportion, so any size in range is exact; modules
    // differ by at most one pixel, which scanners do not mind.
    let module = |px: usize| {
        (px * total / side)
            .checked_sub(QUIET_ZONE)
            .filter(|m| *m < width)
    };
    let mut pixels = Vec::with_capacity(side * side);
    for y in 0..side {
        let row = module(y);
        for x in 0..side {
            let dark = match (row, module(x)) {
                (Some(my), Some(mx)) => colors.get(my * width + mx) == Some(&Color::Dark),
                _ => false,
            };
            pixels.push(if dark { 0u8 } else { 255u8 });
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, size, size);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    #[test]
    fn images_have_the_asked_size() {
        let content = "https://qr.vipps.no/28/2/01/031/abc";
        let image = png(content, 100).unwrap();
        assert_eq!(&image[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(image));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (100, 100));
        let svg = svg(content, 300).unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
