//! A small RFC 4180 reader for report files: fields separated by `,` (Csv)
//! or a tab (Tsv), optionally quoted with `"` (a quote inside a quoted field
//! is doubled, and a quoted field may span lines), records ended by CRLF, LF
//! or CR. Fields borrow from the text unless they hold a doubled quote.

use std::borrow::Cow;

/// One record: its first line (1-based) and its fields.
pub struct Record<'a> {
    pub line: usize,
    pub fields: Vec<Cow<'a, str>>,
}

impl Record<'_> {
    /// Whether every field is empty (a blank line, or `"",""`).
    pub fn is_blank(&self) -> bool {
        self.fields.iter().all(|f| f.trim().is_empty())
    }
}

/// Reads records one at a time.
pub struct Reader<'a> {
    text: &'a str,
    at: usize,
    line: usize,
    delimiter: u8,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str, delimiter: u8) -> Self {
        Reader {
            text,
            at: 0,
            line: 1,
            delimiter,
        }
    }

    /// The next record, `None` at the end, or why the text is not CSV.
    pub fn next_record(&mut self) -> Result<Option<Record<'a>>, String> {
        let bytes = self.text.as_bytes();
        if self.at >= bytes.len() {
            return Ok(None);
        }
        let line = self.line;
        let mut fields = Vec::new();
        loop {
            let (field, ended) = self.field()?;
            fields.push(field);
            if ended {
                return Ok(Some(Record { line, fields }));
            }
        }
    }

    /// One field; `true` when it ended its record.
    fn field(&mut self) -> Result<(Cow<'a, str>, bool), String> {
        let text = self.text;
        let bytes = text.as_bytes();
        if bytes.get(self.at) == Some(&b'"') {
            let start = self.at + 1;
            let mut i = start;
            let mut owned: Option<String> = None;
            let mut from = start;
            loop {
                match bytes.get(i) {
                    None => {
                        return Err(format!(
                            "line {}: a quoted field is never closed",
                            self.line
                        ))
                    }
                    Some(b'"') if bytes.get(i + 1) == Some(&b'"') => {
                        let s = owned.get_or_insert_with(String::new);
                        s.push_str(&text[from..=i]);
                        i += 2;
                        from = i;
                    }
                    Some(b'"') => break,
                    Some(b'\n') => {
                        self.line += 1;
                        i += 1;
                    }
                    Some(b'\r') => {
                        if bytes.get(i + 1) != Some(&b'\n') {
                            self.line += 1;
                        }
                        i += 1;
                    }
                    Some(_) => i += 1,
                }
            }
            let value = match owned {
                Some(mut s) => {
                    s.push_str(&text[from..i]);
                    Cow::Owned(s)
                }
                None => Cow::Borrowed(&text[start..i]),
            };
            self.at = i + 1;
            match bytes.get(self.at) {
                Some(&b) if b == self.delimiter => {
                    self.at += 1;
                    Ok((value, false))
                }
                None | Some(b'\r' | b'\n') => {
                    self.end_of_record();
                    Ok((value, true))
                }
                Some(_) => Err(format!(
                    "line {}: text after the closing quote of a field",
                    self.line
                )),
            }
        } else {
            let start = self.at;
            let mut i = start;
            while let Some(&b) = bytes.get(i) {
                if b == self.delimiter || b == b'\r' || b == b'\n' {
                    break;
                }
                i += 1;
            }
            let value = Cow::Borrowed(&text[start..i]);
            self.at = i;
            if bytes.get(i) == Some(&self.delimiter) {
                self.at += 1;
                Ok((value, false))
            } else {
                self.end_of_record();
                Ok((value, true))
            }
        }
    }

    /// Step over CRLF, LF or CR (or nothing, at the end).
    fn end_of_record(&mut self) {
        let bytes = self.text.as_bytes();
        match bytes.get(self.at) {
            Some(b'\r') => {
                self.at += 1;
                if bytes.get(self.at) == Some(&b'\n') {
                    self.at += 1;
                }
                self.line += 1;
            }
            Some(b'\n') => {
                self.at += 1;
                self.line += 1;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str, delimiter: u8) -> Result<Vec<(usize, Vec<String>)>, String> {
        let mut reader = Reader::new(text, delimiter);
        let mut out = Vec::new();
        while let Some(r) = reader.next_record()? {
            out.push((r.line, r.fields.iter().map(|f| f.to_string()).collect()));
        }
        Ok(out)
    }

    #[test]
    fn quotes_separators_and_line_ends() {
        let text = "\"a\",\"b, c\",d\r\n\"say \"\"hi\"\"\",,\"two\nlines\"\n\nlast";
        let records = all(text, b',').expect("csv");
        assert_eq!(
            records,
            vec![
                (1, vec!["a".into(), "b, c".into(), "d".into()]),
                (
                    2,
                    vec!["say \"hi\"".into(), String::new(), "two\nlines".into()]
                ),
                (4, vec![String::new()]),
                (5, vec!["last".into()]),
            ]
        );
        assert_eq!(
            all("a\tb,c\t\"d\"\r\n", b'\t').expect("tsv"),
            vec![(1, vec!["a".into(), "b,c".into(), "d".into()])]
        );
        assert!(all("\"open", b',').is_err());
        assert!(all("\"a\"b", b',').is_err());
    }
}
