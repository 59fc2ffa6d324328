//! Local QR rendering for printing: SVG (vector) and PNG (greyscale, 8 bit).

use qrcode::{render::svg, Color, EcLevel, QrCode};

use crate::domain::PaygateError;

/// Modules of white border around the code, as the QR standard asks.
const QUIET_ZONE: usize = 4;

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

pub fn render_png(content: &str, size: u32) -> Result<Vec<u8>, PaygateError> {
    let code = code(content)?;
    let modules = code.width();
    let colors = code.to_colors();
    let total = modules + 2 * QUIET_ZONE;
    // Whole pixels per module, at least the requested size.
    let scale = (size as usize).div_ceil(total).max(1);
    let side = total * scale;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
        for y in my * scale..(my + 1) * scale {
            let row = y * side;
            pixels[row + mx * scale..row + (mx + 1) * scale].fill(0);
        }
    }
    let mut out = Vec::new();
    let side32 =
        u32::try_from(side).map_err(|_| PaygateError::Internal("image too large".into()))?;
    let mut encoder = png::Encoder::new(&mut out, side32, side32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| PaygateError::Internal(format!("PNG: {e}")))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| PaygateError::Internal(format!("PNG: {e}")))?;
    writer
        .finish()
        .map_err(|e| PaygateError::Internal(format!("PNG: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://qr.vipps.no/28/2/01/031/taxi-34-abc";

    fn decode_png(bytes: &[u8]) -> String {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
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
