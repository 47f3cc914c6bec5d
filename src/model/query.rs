//! The SQL of a request, read without a parser: only what pgstress needs to know of it.

/// The highest `$N` placeholder in the SQL, skipping quoted literals and identifiers.
pub fn highest_placeholder(sql: &str) -> u32 {
    let bytes = sql.as_bytes();
    let mut highest = 0;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b'$' => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                if digits > 0 {
                    let n = sql[i + 1..i + 1 + digits].parse().unwrap_or(u32::MAX);
                    highest = highest.max(n);
                    i += digits;
                }
            }
            None => {}
        }
        i += 1;
    }
    highest
}
