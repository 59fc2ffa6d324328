//! QR images: SVG through the `qrcode` renderer, PNG drawn from its module matrix.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

/// Image side in pixels when no `Size` is given (the guide: 800x800).
pub const DEFAULT_SIZE: u32 = 800;
/// The `Size` header's range.
pub const SIZES: std::ops::RangeInclusive<u32> = 100..=2000;

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

/// An 8-bit greyscale PNG of exactly `size` x `size` pixels (the code drawn at least that big,
/// then scaled down to the exact size, nearest neighbour: modules differ by at most a pixel).
pub fn png(content: &str, size: u32) -> Result<Vec<u8>, String> {
    let drawn = encode(content)?
        .render::<image::Luma<u8>>()
        .quiet_zone(true)
        .min_dimensions(size, size)
        .build();
    let exact = image::imageops::resize(&drawn, size, size, image::imageops::FilterType::Nearest);
    let mut out = std::io::Cursor::new(Vec::new());
    exact
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(out.into_inner())
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
        let decoded = image::load_from_memory(&image).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (100, 100));
        let svg = svg(content, 300).unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
