//! Media types: the `Accept` header, `Content-Type` parameters, and the multipart writer.

use bytes::Bytes;

/// One media range of an `Accept` header (or a `Content-Type`).
#[derive(Clone, Debug, PartialEq)]
pub struct MediaRange {
    /// `type/subtype`, lowercase.
    pub essence: String,
    /// Parameters, names lowercase, values unquoted.
    pub params: Vec<(String, String)>,
    /// The quality (`q`), 1 when absent.
    pub quality: f32,
}

impl MediaRange {
    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether this range covers the media type `essence` (`*/*`, `type/*` or equal).
    pub fn covers(&self, essence: &str) -> bool {
        if self.essence == "*/*" || self.essence == essence {
            return true;
        }
        match self.essence.strip_suffix("/*") {
            Some(main) => essence.split('/').next() == Some(main),
            None => false,
        }
    }
}

/// Splits `text` on `separator` outside double quotes.
fn split_unquoted(text: &str, separator: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                out.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// Parses one media type with parameters (`multipart/related; type="application/dicom"`).
pub fn parse_media_type(text: &str) -> Option<MediaRange> {
    let mut pieces = split_unquoted(text, ';').into_iter();
    let essence = pieces.next()?.trim().to_ascii_lowercase();
    let (main, sub) = essence.split_once('/')?;
    if main.is_empty() || sub.is_empty() || essence.contains(char::is_whitespace) {
        return None;
    }
    let mut params = Vec::new();
    let mut quality = 1.0;
    for piece in pieces {
        let Some((name, value)) = piece.split_once('=') else { continue };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().trim_matches('"').to_owned();
        if name == "q" {
            // A weight outside 0 to 1 (or not a number) makes the range unacceptable.
            quality = value.parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q)).unwrap_or(0.0);
        } else {
            params.push((name, value));
        }
    }
    Some(MediaRange { essence, params, quality })
}

/// The media ranges of an `Accept` header, best first; `*/*` when there is none. Ranges with
/// `q=0` are dropped.
pub fn parse_accept(header: Option<&str>) -> Vec<MediaRange> {
    let Some(header) = header.filter(|h| !h.trim().is_empty()) else {
        return vec![MediaRange { essence: "*/*".into(), params: Vec::new(), quality: 1.0 }];
    };
    let mut ranges: Vec<MediaRange> = split_unquoted(header, ',').into_iter().filter_map(parse_media_type).filter(|r| r.quality > 0.0).collect();
    ranges.sort_by(|a, b| b.quality.total_cmp(&a.quality));
    ranges
}

/// Whether the ranges accept a DICOM JSON answer (`application/dicom+json` or `application/json`).
pub fn accepts_json(ranges: &[MediaRange]) -> bool {
    ranges.iter().any(|r| r.covers("application/dicom+json") || r.covers("application/json"))
}

/// The media type of the pixel data of an object stored in `transfer_syntax`, as WADO-RS frames
/// carry it: `application/octet-stream` for native (uncompressed) little endian pixel data.
pub fn frame_media_type(transfer_syntax: &str) -> Option<&'static str> {
    Some(match transfer_syntax {
        "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" => "application/octet-stream",
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" | "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "image/jpx",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => "image/jphc",
        _ => return None,
    })
}

/// A fresh multipart boundary.
pub fn boundary() -> String {
    format!("pacs-{:032x}", uuid_like())
}

fn uuid_like() -> u128 {
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    now ^ (u128::from(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) << 64)
}

/// The header of one part: the delimiter line, then its headers.
pub fn part_header(boundary: &str, content_type: &str, extra: &[(&str, &str)]) -> Bytes {
    let mut out = format!("--{boundary}\r\nContent-Type: {content_type}\r\n");
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    Bytes::from(out)
}

/// The end of a multipart body (after the last part's content).
pub fn closing(boundary: &str) -> Bytes {
    Bytes::from(format!("\r\n--{boundary}--\r\n"))
}

/// What goes between the content of one part and the header of the next.
pub const PART_END: &[u8] = b"\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        let ranges = parse_accept(Some(r#"multipart/related; type="application/dicom"; transfer-syntax=*, application/json;q=0.5, text/html;q=0"#));
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0].essence, "multipart/related");
        assert_eq!(ranges[0].param("type"), Some("application/dicom"));
        assert_eq!(ranges[0].param("transfer-syntax"), Some("*"));
        assert!(accepts_json(&ranges));
        assert!(accepts_json(&parse_accept(None)));
        assert!(!accepts_json(&parse_accept(Some("application/dicom+xml"))));
        assert!(parse_accept(Some("image/*"))[0].covers("image/png"));
        assert_eq!(parse_media_type("garbage"), None);
    }

    #[test]
    fn weights_out_of_range_make_a_range_unacceptable() {
        for q in ["2", "-1", "NaN", "inf", "x"] {
            assert!(parse_accept(Some(&format!("application/json;q={q}"))).is_empty(), "q={q}");
        }
        assert_eq!(parse_accept(Some("application/json;q=1.0, image/png;q=0.001")).len(), 2);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn any_accept_header_gives_ranges_best_first(header in proptest::prelude::prop_oneof![
            ".{0,40}",
            "([a-z*]{1,6}/[a-z+*]{1,10}(;[ a-z]{1,5}=(\"[^\"]{0,6}\"|[0-9.a-z]{0,4})){0,2}, ?){0,3}",
        ]) {
            let ranges = parse_accept(Some(&header));
            for range in &ranges {
                proptest::prop_assert!(range.quality > 0.0 && range.quality <= 1.0, "{:?}", range);
                proptest::prop_assert!(range.essence.contains('/'), "{:?}", range);
            }
            proptest::prop_assert!(ranges.windows(2).all(|w| w[0].quality >= w[1].quality));
        }

        #[test]
        fn media_types_read_back_what_was_written(
            main in "[a-z]{1,8}",
            sub in "[a-z+.-]{1,12}",
            params in proptest::collection::vec(("[a-z-]{1,8}", "[a-zA-Z0-9/.;,= +-]{0,12}"), 0..3),
        ) {
            let params: Vec<(String, String)> = params.into_iter().filter(|(name, _)| name != "q").collect();
            let text = params.iter().fold(format!("{main}/{sub}"), |text, (name, value)| format!("{text}; {name}=\"{value}\""));
            let parsed = parse_media_type(&text).ok_or_else(|| proptest::test_runner::TestCaseError::fail(text.clone()))?;
            proptest::prop_assert_eq!(parsed.essence, format!("{main}/{sub}"));
            // Quoted values come back as they were, separators and spaces included.
            proptest::prop_assert_eq!(&parsed.params, &params);
        }
    }
}
