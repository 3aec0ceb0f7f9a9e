//! Mailbox providers, recognised from MX host names (every MX of a domain must agree).

/// Providers with their own lane defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// Gmail and Google Workspace.
    Google,
    /// Outlook.com, Hotmail and Microsoft 365.
    Microsoft,
    /// Yahoo and AOL.
    Yahoo,
    /// iCloud.
    Apple,
    /// Anyone else (lanes then group domains by MX set).
    Other,
}

impl Provider {
    /// Lower-case name used in lane keys, metrics and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Google => "google",
            Provider::Microsoft => "microsoft",
            Provider::Yahoo => "yahoo",
            Provider::Apple => "apple",
            Provider::Other => "other",
        }
    }
}

const SUFFIXES: &[(&str, Provider)] = &[
    (".google.com", Provider::Google),
    (".googlemail.com", Provider::Google),
    (".protection.outlook.com", Provider::Microsoft),
    (".mx.microsoft", Provider::Microsoft),
    (".outlook.com", Provider::Microsoft),
    (".hotmail.com", Provider::Microsoft),
    (".yahoodns.net", Provider::Yahoo),
    (".aol.com", Provider::Yahoo),
    (".icloud.com", Provider::Apple),
    (".me.com", Provider::Apple),
];

/// The provider of one MX host.
pub fn of_host(host: &str) -> Provider {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    let dotted = format!(".{h}");
    SUFFIXES.iter().find(|(s, _)| dotted.ends_with(s)).map_or(Provider::Other, |(_, p)| *p)
}

/// The provider of an MX set: a named provider only when every host agrees.
pub fn of_mx_set<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Provider {
    let mut found: Option<Provider> = None;
    for h in hosts {
        let p = of_host(h);
        match found {
            None => found = Some(p),
            Some(f) if f != p => return Provider::Other,
            _ => {}
        }
    }
    found.unwrap_or(Provider::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_providers() {
        assert_eq!(of_host("gmail-smtp-in.l.google.com."), Provider::Google);
        assert_eq!(of_host("ASPMX.L.GOOGLE.COM"), Provider::Google);
        assert_eq!(of_host("example-com.mail.protection.outlook.com"), Provider::Microsoft);
        assert_eq!(of_host("hotmail-com.olc.protection.outlook.com"), Provider::Microsoft);
        assert_eq!(of_host("mta7.am0.yahoodns.net"), Provider::Yahoo);
        assert_eq!(of_host("mx01.mail.icloud.com"), Provider::Apple);
        assert_eq!(of_host("mx.example.org"), Provider::Other);
        assert_eq!(of_host("notgoogle.com"), Provider::Other);
        assert_eq!(of_mx_set(["alt1.aspmx.l.google.com", "aspmx.l.google.com"]), Provider::Google);
        assert_eq!(of_mx_set(["aspmx.l.google.com", "mx.backup.example"]), Provider::Other);
    }
}
