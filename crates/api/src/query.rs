//! The AWS Query protocol's form parameters: `Destination.ToAddresses.member.1=…`,
//! `Tags.member.2.Name=…`, `Message.Body.Text.Data=…`.

use std::collections::BTreeMap;

/// Decoded form parameters of one request.
#[derive(Debug, Default)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// Every parameter, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    /// Decode an `application/x-www-form-urlencoded` body (the last of repeated keys wins).
    pub fn parse(body: &[u8]) -> Params {
        Params(form_urlencoded::parse(body).into_owned().collect())
    }

    /// One scalar.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Whether any key is `prefix` itself or starts with `prefix.`.
    pub fn has(&self, prefix: &str) -> bool {
        let dotted = format!("{prefix}.");
        self.0
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .any(|(k, _)| k == prefix || k.starts_with(&dotted))
    }

    /// The list `prefix.member.1`, `prefix.member.2`, … up to the first gap.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        for i in 1.. {
            match self.0.get(&format!("{prefix}.member.{i}")) {
                Some(v) => out.push(v.clone()),
                None => break,
            }
        }
        out
    }

    /// The list of structures `prefix.member.N.{field}`, up to the first N with no field.
    pub fn struct_list(&self, prefix: &str, fields: &[&str]) -> Vec<Vec<Option<String>>> {
        let mut out = Vec::new();
        for i in 1.. {
            let row: Vec<Option<String>> =
                fields.iter().map(|f| self.0.get(&format!("{prefix}.member.{i}.{f}")).cloned()).collect();
            if row.iter().all(Option::is_none) {
                break;
            }
            out.push(row);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_botocore_encoding() {
        let p = Params::parse(
            b"Action=SendEmail&Destination.ToAddresses.member.1=rcpt%40example.net&Destination.ToAddresses.member.2=b%40x.test&Destination.CcAddresses=&Message.Subject.Data=Gr%C3%BC%C3%9Fe+%E2%98%83&Tags.member.1.Name=campaign&Tags.member.1.Value=x",
        );
        assert_eq!(p.list("Destination.ToAddresses"), vec!["rcpt@example.net", "b@x.test"]);
        assert!(p.list("Destination.CcAddresses").is_empty());
        assert!(p.has("Destination") && p.has("Message") && !p.has("Mess"));
        assert_eq!(p.get("Message.Subject.Data"), Some("Grüße ☃"));
        assert_eq!(p.struct_list("Tags", &["Name", "Value"]), vec![vec![Some("campaign".into()), Some("x".into())]]);
    }
}
