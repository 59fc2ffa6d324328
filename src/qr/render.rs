//! Local QR rendering for printing: SVG (vector) and PNG (greyscale, 8 bit).

use qrcode::{render::svg, EcLevel, QrCode};

use crate::domain::PaygateError;

fn code(content: &str) -> Result<QrCode, PaygateError> {
    // Level M survives some dirt and scratches on a sticker.
    QrCode::with_error_correction_level(content.as_bytes(), EcLevel::M)
        .map_err(|e| PaygateError::Internal(format!("cannot encode the QR content: {e}")))
}

pub fn render_svg(content: &str, size: u32) -> Result<String, PaygateError> {
    Ok(code(content)?
        .render::<svg::Color<'_>>()
        .min_dimensions(size, size)
        .quiet_zone(true)
        .build())
}

/// A greyscale PNG of at least `size` x `size` pixels, whole pixels per module (crisp print).
pub fn render_png(content: &str, size: u32) -> Result<Vec<u8>, PaygateError> {
    let image = code(content)?
        .render::<image::Luma<u8>>()
        .min_dimensions(size, size)
        .quiet_zone(true)
        .build();
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| PaygateError::Internal(format!("PNG: {e}")))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://qr.vipps.no/28/2/01/031/taxi-34-abc";

    fn decode_png(bytes: &[u8]) -> String {
        let image = image::load_from_memory(bytes).unwrap().to_luma8();
        let (w, h) = (image.width() as usize, image.height() as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
            image.get_pixel(x as u32, y as u32).0[0]
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        grids[0].decode().unwrap().1
    }

    #[test]
    fn png_decodes_to_the_content() {
        let png = render_png(URL, 400).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(decode_png(&png), URL);
    }

    #[test]
    fn svg_is_an_svg_document() {
        let svg = render_svg(URL, 300).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.contains("</svg>"));
    }
}
