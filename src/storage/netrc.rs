//! FTP passwords from `~/.netrc`, the way ftp(1) and curl find them.

/// The password for `user` on `host` from `$NETRC` or `~/.netrc`, if any.
pub(crate) fn password(host: &str, user: &str) -> Option<String> {
    let path = std::env::var_os("NETRC")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".netrc")))?;
    let text = std::fs::read_to_string(path).ok()?;
    lookup(&text, host, user)
}

/// Finds `machine HOST login USER password P` (or a `default` entry).
pub(crate) fn lookup(text: &str, host: &str, user: &str) -> Option<String> {
    let mut tokens = text.split_whitespace();
    let mut entries: Vec<(Option<String>, Option<String>, Option<String>)> = Vec::new();
    while let Some(t) = tokens.next() {
        match t {
            "machine" => entries.push((tokens.next().map(String::from), None, None)),
            "default" => entries.push((None, None, None)),
            "login" => {
                if let Some(e) = entries.last_mut() {
                    e.1 = tokens.next().map(String::from);
                }
            }
            "password" => {
                if let Some(e) = entries.last_mut() {
                    e.2 = tokens.next().map(String::from);
                }
            }
            _ => {}
        }
    }
    let fits = |e: &&(Option<String>, Option<String>, Option<String>)| {
        e.1.as_deref().is_none_or(|l| l == user) && e.2.is_some()
    };
    entries
        .iter()
        .filter(|e| e.0.as_deref() == Some(host))
        .find(fits)
        .or_else(|| entries.iter().filter(|e| e.0.is_none()).find(fits))
        .and_then(|e| e.1.clone().and(e.2.clone()).or(e.2.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_machine_then_default() {
        let t = "machine a.example login u password pa\nmachine b login v password pb\ndefault login u password pd";
        assert_eq!(lookup(t, "a.example", "u").as_deref(), Some("pa"));
        assert_eq!(lookup(t, "b", "v").as_deref(), Some("pb"));
        assert_eq!(lookup(t, "c", "u").as_deref(), Some("pd"));
        assert_eq!(lookup(t, "b", "x"), None);
    }
}
