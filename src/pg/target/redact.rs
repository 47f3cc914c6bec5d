//! Passwords masked out of free text, so that none reaches a log, a report or an error.

/// Masks what looks like a password anywhere in free text (a DSN given where no DSN was
/// expected ends up in an error message): the value of every `password` key, quoted or not,
/// spaces around its `=` or not, and the `:...@` of a URL.
pub fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("password") {
        let after_key = &rest[at + "password".len()..];
        let after_equals = after_key.trim_start();
        let Some(value) = after_equals.strip_prefix('=') else {
            out.push_str(&rest[..at + "password".len()]);
            rest = after_key;
            continue;
        };
        let value = value.trim_start();
        out.push_str(&rest[..at]);
        out.push_str("password=***");
        let end = match value.chars().next() {
            // libpq's quoted value: up to the closing quote, backslash escapes skipped.
            Some('\'') => {
                let mut escaped = false;
                value
                    .char_indices()
                    .skip(1)
                    .find(|&(_, c)| {
                        let closes = c == '\'' && !escaped;
                        escaped = c == '\\' && !escaped;
                        closes
                    })
                    .map_or(value.len(), |(i, _)| i + 1)
            }
            _ => value
                .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '&'))
                .unwrap_or(value.len()),
        };
        rest = &value[end..];
    }
    out.push_str(rest);
    mask_url_passwords(&out)
}

/// `scheme://user:secret@host` becomes `scheme://user:***@host`.
fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '?' | '\'' | '"'))
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority
            .rfind('@')
            .and_then(|at| authority[..at].find(':').map(|colon| (colon, at)))
        {
            Some((colon, at)) => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_free_text_are_masked() {
        assert_eq!(
            redact_secrets(
                "unexpected argument 'postgres://u:S3cr3t@h:5432/x?sslmode=require' found"
            ),
            "unexpected argument 'postgres://u:***@h:5432/x?sslmode=require' found"
        );
        assert_eq!(
            redact_secrets("unexpected argument 'host=h password=S3cr3t dbname=x' found"),
            "unexpected argument 'host=h password=*** dbname=x' found"
        );
        assert_eq!(
            redact_secrets("found 'host=h password = 'a b\\' c' dbname=x'"),
            "found 'host=h password=*** dbname=x'"
        );
        assert_eq!(
            redact_secrets("the password is not set"),
            "the password is not set"
        );
        assert_eq!(
            redact_secrets("see https://example.com/a and postgres://u@h/x"),
            "see https://example.com/a and postgres://u@h/x"
        );
    }
}
