//! Credentials and region from `~/.aws/credentials` and `~/.aws/config`,
//! used when the `AWS_*` environment variables do not set them.

use std::collections::HashMap;

/// Settings of one profile (`AWS_PROFILE`, else `default`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Profile {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

fn sections(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            current = name
                .strip_prefix("profile ")
                .unwrap_or(name)
                .trim()
                .to_string();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(current.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

/// Reads the files named by `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE` or the defaults.
pub(crate) fn load() -> Profile {
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let creds = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(Into::into)
        .unwrap_or_else(|| home.join(".aws/credentials"));
    let config = std::env::var_os("AWS_CONFIG_FILE")
        .map(Into::into)
        .unwrap_or_else(|| home.join(".aws/config"));
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    parse(
        &std::fs::read_to_string(creds).unwrap_or_default(),
        &std::fs::read_to_string(config).unwrap_or_default(),
        &profile,
    )
}

/// Merges one profile from both files; the credentials file wins.
pub(crate) fn parse(credentials: &str, config: &str, profile: &str) -> Profile {
    let (c, f) = (sections(credentials), sections(config));
    let get = |k: &str| {
        c.get(profile)
            .and_then(|s| s.get(k))
            .or_else(|| f.get(profile).and_then(|s| s.get(k)))
            .cloned()
    };
    Profile {
        access_key_id: get("aws_access_key_id"),
        secret_access_key: get("aws_secret_access_key"),
        session_token: get("aws_session_token"),
        region: get("region"),
        endpoint_url: get("endpoint_url"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_profiles() {
        let creds = "[default]\naws_access_key_id = AK\naws_secret_access_key=SK\n[other]\naws_access_key_id=O";
        let conf = "[default]\nregion = eu-west-1\n[profile other]\nregion=us-east-2\nendpoint_url = http://x:9000";
        let d = parse(creds, conf, "default");
        assert_eq!(d.access_key_id.as_deref(), Some("AK"));
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        let o = parse(creds, conf, "other");
        assert_eq!(o.region.as_deref(), Some("us-east-2"));
        assert_eq!(o.endpoint_url.as_deref(), Some("http://x:9000"));
        assert_eq!(o.secret_access_key, None);
    }
}
