//! Pairing QR codes: a WhatsApp Web pairing payload (`2@…,…,…,…`) drawn as PNG, SVG or terminal text.
//!
//! All three draw one module grid: the symbol at error-correction level M inside a 4-module quiet zone. The PNG
//! is written here rather than with the `png` crate: at 8 px per module and 1 bit per pixel a module is exactly
//! one byte, so the image is three chunks around a zlib stream. The tests read every rendering back with an
//! independent decoder (the `png` crate, then rqrr) and check it yields the payload.

use std::fmt::Write as _;
use std::io::Write as _;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use qrcode::{Color, EcLevel, QrCode};

/// Light modules on each side of the symbol, as the QR specification asks.
const QUIET_ZONE: usize = 4;
/// PNG pixels per module side.
const MODULE_PX: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    /// More than the largest QR code (version 40, 2331 bytes at level M) holds.
    #[error("the pairing payload is {len} bytes, too long for a QR code")]
    TooLong { len: usize },
    /// The encoder refused the payload for another reason; it knows none for byte data.
    #[error("cannot encode the pairing payload as a QR code: {0}")]
    Encoder(String),
}

/// A black-on-white PNG: 8 px per module, 1-bit greyscale.
pub fn png(payload: &str) -> Result<Vec<u8>, QrError> {
    let grid = Grid::encode(payload)?;
    let side = u32::try_from(grid.size * MODULE_PX).expect("at most (177 + 8) × 8 pixels");
    // Each scanline is filter type 0 (none), then one byte per module: 8 pixels of 0 (black) or 1 (white).
    let mut scanlines = Vec::with_capacity((grid.size + 1) * grid.size * MODULE_PX);
    for row in grid.rows() {
        let line: Vec<u8> = std::iter::once(0).chain(row.iter().map(|&dark| if dark { 0x00 } else { 0xFF })).collect();
        for _ in 0..MODULE_PX {
            scanlines.extend_from_slice(&line);
        }
    }
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::best());
    zlib.write_all(&scanlines).expect("writing to a Vec cannot fail");
    let idat = zlib.finish().expect("writing to a Vec cannot fail");

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    // Bit depth 1, colour type 0 (greyscale), deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]);

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    push_chunk(&mut out, b"IHDR", &ihdr);
    push_chunk(&mut out, b"IDAT", &idat);
    push_chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// A standalone SVG document, one unit per module (`viewBox="0 0 n n"`), 8 px per module by default.
pub fn svg(payload: &str) -> Result<String, QrError> {
    let grid = Grid::encode(payload)?;
    let (n, px) = (grid.size, grid.size * MODULE_PX);
    let mut out = format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "\n",
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{px}" height="{px}" viewBox="0 0 {n} {n}" "#,
            r#"shape-rendering="crispEdges">"#,
            r##"<rect width="{n}" height="{n}" fill="#fff"/><path fill="#000" d=""##,
        ),
        px = px,
        n = n,
    );
    // One rectangle per horizontal run of dark modules.
    for (y, row) in grid.rows().enumerate() {
        let mut x = 0;
        while x < n {
            let run = row[x..].iter().take_while(|&&dark| dark).count();
            if run > 0 {
                write!(out, "M{x} {y}h{run}v1h-{run}z").expect("writing to a String cannot fail");
            }
            x += run.max(1);
        }
    }
    out.push_str("\"/></svg>\n");
    Ok(out)
}

/// The code as text, two module rows per line, every line ending in a newline.
///
/// Light modules are drawn (`█`, `▀`, `▄`) and dark ones left blank, so on the usual dark terminal the code
/// reads dark-on-light, as scanners expect. On a light-background terminal it comes out inverted: serve the PNG
/// instead. The grid has an odd number of rows, so the bottom half of the last line is left blank.
pub fn terminal(payload: &str) -> Result<String, QrError> {
    let grid = Grid::encode(payload)?;
    let light = |x, y| y < grid.size && !grid.is_dark(x, y);
    let mut out = String::with_capacity((grid.size + 1) * grid.size.div_ceil(2) * 3);
    for y in (0..grid.size).step_by(2) {
        for x in 0..grid.size {
            out.push(match (light(x, y), light(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}

/// The symbol inside its quiet zone: `size × size` modules, row by row.
struct Grid {
    size: usize,
    dark: Vec<bool>,
}

impl Grid {
    fn encode(payload: &str) -> Result<Self, QrError> {
        let code = QrCode::with_error_correction_level(payload, EcLevel::M).map_err(|e| match e {
            qrcode::types::QrError::DataTooLong => QrError::TooLong { len: payload.len() },
            other => QrError::Encoder(other.to_string()),
        })?;
        let inner = code.width();
        let size = inner + 2 * QUIET_ZONE;
        let mut dark = vec![false; size * size];
        for (i, color) in code.to_colors().into_iter().enumerate() {
            let (x, y) = (QUIET_ZONE + i % inner, QUIET_ZONE + i / inner);
            dark[y * size + x] = color == Color::Dark;
        }
        Ok(Self { size, dark })
    }

    fn is_dark(&self, x: usize, y: usize) -> bool {
        self.dark[y * self.size + x]
    }

    fn rows(&self) -> impl Iterator<Item = &[bool]> {
        self.dark.chunks(self.size)
    }
}

/// Appends one PNG chunk: length, type, data, and the CRC-32 of type and data.
fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).expect("a QR code's PNG chunks are far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like a real pairing payload: ref, noise key, identity key, advertising secret.
    const PAYLOAD: &str = "2@pU3KGCUwux1tEyze1iN7LtkeP3IfyxlxF0SU1kk8nVw0YL4xIB5p/tqg7ui5mX9cfCmZ/a/lkyU81lSvTfrXFCeg,\
                           rrP+6SMvivIhH57kkcWxC+y1Vjv8Hm+TQn7LyP4pVeU=,zY5G3I7Ut8J2TSpaTXZ3BvhdhpACSta9o0Ab6cjLzMk=,\
                           NfbNH2EiauFTOK4aNABNM7oNJGrATIGxuvI+O/nu9fc=";

    /// Modules across, quiet zone included, as every rendering of `payload` should have them.
    fn expected_size(payload: &str) -> usize {
        QrCode::with_error_correction_level(payload, EcLevel::M).unwrap().width() + 2 * QUIET_ZONE
    }

    /// Decodes a greyscale image with rqrr, which must find exactly one code.
    fn scan(width: usize, height: usize, pixel: impl Fn(usize, usize) -> u8) -> String {
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, pixel);
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "rqrr should find one QR code");
        grids[0].decode().expect("the QR code decodes").1
    }

    /// Decodes a module grid (`true` = light), drawn 4 px per module.
    fn scan_modules(light: &[Vec<bool>]) -> String {
        let px = light.len() * 4;
        scan(px, px, |x, y| if light[y / 4][x / 4] { 255 } else { 0 })
    }

    #[test]
    fn the_png_scans_back_to_the_payload() {
        // Arrange
        let n = expected_size(PAYLOAD);

        // Act
        let png = png(PAYLOAD).unwrap();

        // Assert: the png crate reads it as an n × 8 px square of pure black and white.
        let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((info.width as usize, info.height as usize), (n * MODULE_PX, n * MODULE_PX));
        assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Grayscale, png::BitDepth::Eight));
        assert!(pixels.iter().all(|&p| p == 0 || p == 255));
        let side = n * MODULE_PX;
        let quiet = QUIET_ZONE * MODULE_PX;
        assert!(pixels[..quiet * side].iter().all(|&p| p == 255), "the top quiet zone is white");
        assert!((0..side).all(|y| pixels[y * side..y * side + quiet].iter().all(|&p| p == 255)), "so is the left");
        // …and rqrr reads the payload from those pixels.
        assert_eq!(scan(side, side, |x, y| pixels[y * side + x]), PAYLOAD);
    }

    #[test]
    fn the_terminal_drawing_scans_back_to_the_payload() {
        // Arrange
        let n = expected_size(PAYLOAD);

        // Act
        let text = terminal(PAYLOAD).unwrap();

        // Assert: each character is two modules, drawn when light, over n.div_ceil(2) lines of n characters.
        let lines: Vec<&str> = text.lines().collect();
        assert!(text.ends_with('\n'));
        assert_eq!(lines.len(), n.div_ceil(2));
        let mut light = Vec::new();
        for line in &lines {
            let (top, bottom): (Vec<bool>, Vec<bool>) = line
                .chars()
                .map(|c| match c {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    ' ' => (false, false),
                    other => panic!("unexpected character {other:?}"),
                })
                .unzip();
            assert_eq!(top.len(), n);
            light.extend([top, bottom]);
        }
        light.truncate(n);
        assert!(light[..QUIET_ZONE].iter().flatten().all(|&l| l), "the top quiet zone is drawn light");
        assert!(light.iter().all(|row| row[..QUIET_ZONE].iter().all(|&l| l)), "so is the left");
        assert_eq!(scan_modules(&light), PAYLOAD);
    }

    #[test]
    fn the_svg_is_a_standalone_document_that_scans_back_to_the_payload() {
        // Arrange
        let n = expected_size(PAYLOAD);

        // Act
        let svg = svg(PAYLOAD).unwrap();

        // Assert: one root element, balanced tags, a viewBox of one unit per module, nothing fetched or run.
        assert!(svg.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg "));
        assert_balanced_tags(&svg);
        assert!(svg.contains(&format!(r#"viewBox="0 0 {n} {n}""#)));
        assert_eq!(svg.matches("http").count(), 1);
        assert!(svg.contains(r#"xmlns="http://www.w3.org/2000/svg""#));
        for forbidden in ["<script", "href", "<image", "<foreignObject", "url(", "<style"] {
            assert!(!svg.contains(forbidden), "the SVG contains {forbidden}");
        }
        // The path's runs, painted back onto a light grid, scan as the payload.
        let d = svg.split(" d=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap();
        let mut light = vec![vec![true; n]; n];
        for run in d.split('M').filter(|run| !run.is_empty()) {
            let (x, rest) = run.split_once(' ').unwrap();
            let (y, rest) = rest.split_once('h').unwrap();
            let len = rest.split_once('v').unwrap().0;
            let (x, y, len): (usize, usize, usize) = (x.parse().unwrap(), y.parse().unwrap(), len.parse().unwrap());
            light[y][x..x + len].fill(false);
        }
        assert_eq!(scan_modules(&light), PAYLOAD);
    }

    /// Every opening tag is closed in order, or closes itself; exactly one root element.
    fn assert_balanced_tags(xml: &str) {
        let mut open = Vec::new();
        let mut roots = 0;
        for tag in xml.split('<').skip(1).map(|rest| rest.split_once('>').expect("every < has its >").0) {
            if tag.starts_with('?') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name), "closing tag out of order");
                continue;
            }
            roots += usize::from(open.is_empty());
            let name = tag.split_whitespace().next().unwrap();
            if !tag.ends_with('/') {
                open.push(name);
            }
        }
        assert!(open.is_empty(), "unclosed tags: {open:?}");
        assert_eq!(roots, 1);
    }

    #[test]
    fn a_payload_too_long_for_any_qr_code_is_an_error() {
        // Arrange
        let payload = "x".repeat(3000);

        // Act / Assert
        assert!(matches!(png(&payload), Err(QrError::TooLong { len: 3000 })));
        assert!(matches!(svg(&payload), Err(QrError::TooLong { len: 3000 })));
        assert!(matches!(terminal(&payload), Err(QrError::TooLong { len: 3000 })));
    }
}
