//! Just enough of the ZIP format (PKWARE APPNOTE 6.3) to open a report
//! download: the Reporting service's `ReportDownloadUrl` serves one report
//! file compressed "by using zip compression" (ReportRequestStatus docs).
//!
//! The archive is read through its central directory (sizes and CRC are
//! there even when the local header defers them to a data descriptor);
//! entries are stored (method 0) or deflated (method 8, inflated by
//! `miniz_oxide`). Every length is checked against the body before it is
//! used, the inflated size must be the declared one and the CRC-32 must
//! match: a truncated or corrupt download is refused, never half-read.

use adpipe_plugin_sdk::{ErrorKind, PluginError};

/// Local file header signature, also the first bytes of any non-empty archive.
pub const LOCAL_HEADER: &[u8; 4] = b"PK\x03\x04";
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
/// Largest report file inflated (declared size), far above any page the
/// host's `pull.max_response_bytes` lets through compressed.
pub const MAX_INFLATED: u64 = 512 << 20;

/// Whether `body` is a ZIP archive (including an empty one).
pub fn is_zip(body: &[u8]) -> bool {
    body.starts_with(LOCAL_HEADER) || body.starts_with(b"PK\x05\x06")
}

fn malformed(message: impl Into<String>) -> PluginError {
    PluginError::new(ErrorKind::Malformed, "", message)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One file entry of the central directory.
struct Entry {
    name: String,
    flags: u16,
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    local_offset: usize,
}

/// The name and contents of the archive's only file.
pub fn single_file(body: &[u8]) -> Result<(String, Vec<u8>), PluginError> {
    let truncated = || {
        malformed("the ZIP archive is truncated or corrupt (no end of central directory): download it again")
    };
    // The end record is 22 bytes plus a comment of up to 65535.
    let lowest = body.len().saturating_sub(22 + 65_535);
    let end = (lowest..=body.len().saturating_sub(22))
        .rev()
        .find(|&at| u32_at(body, at) == Some(END_OF_CENTRAL_DIRECTORY))
        .ok_or_else(truncated)?;
    let count = u16_at(body, end + 10).ok_or_else(truncated)?;
    let directory = u32_at(body, end + 16).ok_or_else(truncated)?;
    if directory == u32::MAX || count == u16::MAX {
        return Err(PluginError::new(
            ErrorKind::Unsupported,
            "",
            "ZIP64 archives are not supported (a report download is far smaller)",
        ));
    }
    let mut at = directory as usize;
    let mut files = Vec::new();
    for _ in 0..count {
        if u32_at(body, at) != Some(CENTRAL_HEADER) {
            return Err(truncated());
        }
        let field = |offset: usize| u16_at(body, at + offset).ok_or_else(truncated);
        let word = |offset: usize| u32_at(body, at + offset).ok_or_else(truncated);
        let (name_len, extra_len, comment_len) = (
            usize::from(field(28)?),
            usize::from(field(30)?),
            usize::from(field(32)?),
        );
        let name = body
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(truncated)?;
        let entry = Entry {
            name: String::from_utf8_lossy(name).into_owned(),
            flags: field(8)?,
            method: field(10)?,
            crc: word(16)?,
            compressed: u64::from(word(20)?),
            size: u64::from(word(24)?),
            local_offset: word(42)? as usize,
        };
        at += 46 + name_len + extra_len + comment_len;
        if !entry.name.ends_with('/') {
            files.push(entry);
        }
    }
    let entry = match files.len() {
        1 => files.remove(0),
        0 => {
            return Err(PluginError::shape(
                "",
                "the ZIP archive holds no file (a report download holds one CSV or TSV file)",
            ))
        }
        n => {
            return Err(PluginError::shape(
                "",
                format!(
                    "the ZIP archive holds {n} files ({}); a report download holds one",
                    files
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
    };
    if entry.flags & 1 != 0 {
        return Err(PluginError::new(
            ErrorKind::Unsupported,
            "",
            format!("`{}` is encrypted", entry.name),
        ));
    }
    if entry.size > MAX_INFLATED {
        return Err(PluginError::value(
            "",
            format!(
                "`{}` inflates to {} bytes, over the {MAX_INFLATED} this adapter reads: request a shorter window",
                entry.name, entry.size
            ),
        ));
    }
    let local = entry.local_offset;
    if body.get(local..local + 4) != Some(LOCAL_HEADER.as_slice()) {
        return Err(truncated());
    }
    let start = local
        + 30
        + usize::from(u16_at(body, local + 26).ok_or_else(truncated)?)
        + usize::from(u16_at(body, local + 28).ok_or_else(truncated)?);
    let data = usize::try_from(entry.compressed)
        .ok()
        .and_then(|len| body.get(start..start.checked_add(len)?))
        .ok_or_else(|| malformed(format!("`{}` is cut short: download it again", entry.name)))?;
    let contents = match entry.method {
        0 => data.to_vec(),
        8 => miniz_oxide::inflate::decompress_to_vec_with_limit(data, entry.size as usize)
            .map_err(|e| {
                malformed(format!(
                    "`{}` does not inflate ({:?}): download it again",
                    entry.name, e.status
                ))
            })?,
        other => {
            return Err(PluginError::new(
                ErrorKind::Unsupported,
                "",
                format!(
                    "`{}` uses ZIP compression method {other}; only stored (0) and deflate (8) are read",
                    entry.name
                ),
            ))
        }
    };
    if contents.len() as u64 != entry.size || crc32(&contents) != entry.crc {
        return Err(malformed(format!(
            "`{}` fails its size or CRC-32 check: download it again",
            entry.name
        )));
    }
    Ok((entry.name, contents))
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE 802.3, the one ZIP uses).
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[usize::from((c as u8) ^ b)] ^ (c >> 8)
    })
}

/// A one-file archive of `contents` (stored, or deflated when `deflate`), as
/// tests and fixtures need; the layout a report download has.
pub fn archive(name: &str, contents: &[u8], deflate: bool) -> Vec<u8> {
    let (method, data): (u16, Vec<u8>) = if deflate {
        (8, miniz_oxide::deflate::compress_to_vec(contents, 6))
    } else {
        (0, contents.to_vec())
    };
    let crc = crc32(contents);
    let mut out = Vec::new();
    let common = |out: &mut Vec<u8>| {
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // time, date
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(contents.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra
    };
    out.extend_from_slice(LOCAL_HEADER);
    common(&mut out);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&data);
    let directory = out.len();
    out.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes()); // version made by
    common(&mut out);
    out.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
    out.extend_from_slice(&0u32.to_le_bytes()); // external attributes
    out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    out.extend_from_slice(name.as_bytes());
    let size = out.len() - directory;
    out.extend_from_slice(&END_OF_CENTRAL_DIRECTORY.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&(size as u32).to_le_bytes());
    out.extend_from_slice(&(directory as u32).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn archives_round_trip_and_damage_is_refused() {
        let text = b"\"AccountId\",\"Spend\"\r\n\"1\",\"2.50\"\r\n".repeat(50);
        for deflate in [false, true] {
            let zip = archive("report.csv", &text, deflate);
            assert!(is_zip(&zip));
            let (name, back) = single_file(&zip).expect("opens");
            assert_eq!(
                (name.as_str(), back.as_slice()),
                ("report.csv", text.as_slice())
            );
            // Any cut is refused, never half-read.
            for cut in [1, 10, zip.len() / 2, zip.len() - 1] {
                assert!(single_file(&zip[..cut]).is_err(), "cut at {cut}");
            }
            // A flipped byte in the data fails the CRC or the inflate.
            let mut bad = zip.clone();
            bad[40] ^= 0x55;
            assert!(single_file(&bad).is_err());
        }
    }
}
