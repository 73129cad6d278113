//! Where SQL statements end: a scanner that finds the semicolons outside
//! string literals ('...', E'...'), quoted identifiers ("..."), dollar-quoted
//! strings ($tag$...$tag$) and comments (-- and nested /* */).

/// Byte offsets just after each statement-ending `;` of `text`.
pub fn terminators(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b';' => {
                out.push(i + 1);
                i += 1;
            }
            b'\'' => {
                // E'...' strings take backslash escapes.
                let escapes = i > 0 && matches!(b[i - 1], b'e' | b'E') && (i < 2 || !ident(b[i - 2]));
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                i += 1;
                while i < b.len() {
                    if b[i] == b'"' {
                        if b.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 1;
                i += 2;
                while i < b.len() && depth > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' if i == 0 || !ident(b[i - 1]) => match dollar_tag(&b[i..]) {
                Some(len) => {
                    let tag = &b[i..i + len];
                    i += len;
                    while i < b.len() && !b[i..].starts_with(tag) {
                        i += 1;
                    }
                    i = (i + len).min(b.len());
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    out
}

/// The length of a dollar-quote opening tag (`$$` or `$name$`) at the start of `b`.
fn dollar_tag(b: &[u8]) -> Option<usize> {
    let mut j = 1;
    while j < b.len() {
        let c = b[j];
        if c == b'$' {
            return Some(j + 1);
        }
        let ok = c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 || (j > 1 && c.is_ascii_digit());
        if !ok {
            return None;
        }
        j += 1;
    }
    None
}

/// True when `text` holds nothing but white space and comments.
pub fn is_blank(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"--") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 1;
            i += 2;
            while i < b.len() && depth > 0 {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(s: &str) -> Vec<usize> {
        terminators(s)
    }

    #[test]
    fn plain_statements() {
        assert_eq!(ends("SELECT 1; SELECT 2;"), vec![9, 19]);
        assert_eq!(ends("SELECT 1"), Vec::<usize>::new());
    }

    #[test]
    fn quotes_and_comments_hide_semicolons() {
        assert!(ends("SELECT 'a;b'").is_empty());
        assert!(ends("SELECT 'it''s;'").is_empty());
        assert!(ends("SELECT E'\\';'").is_empty());
        assert_eq!(ends("SELECT e'\\\\';"), vec![13]);
        assert!(ends("SELECT \"a;\"\"b\"").is_empty());
        assert!(ends("SELECT 1 -- ;\n").is_empty());
        assert!(ends("SELECT /* ; /* ; */ ; */ 1").is_empty());
        assert!(ends("SELECT $$ ; $$").is_empty());
        assert!(ends("SELECT $f$ ; $$ ; $f$").is_empty());
        assert_eq!(ends("SELECT $1;"), vec![10]);
        assert_eq!(ends("SELECT 'x';\n"), vec![11]);
    }

    #[test]
    fn unterminated_quotes_swallow_the_rest() {
        assert!(ends("SELECT 'abc;").is_empty());
        assert!(ends("SELECT $$ abc;").is_empty());
    }

    #[test]
    fn blank() {
        assert!(is_blank("  \n -- hi\n /* x */ "));
        assert!(!is_blank(" x"));
    }
}
