//! Kong's TLS entities: `certificates` (with their nested `snis`), top-level `snis` naming a
//! certificate, `ca_certificates`, and the services' references to them (`client_certificate`,
//! `ca_certificates`). Only what the file says is checked here (required fields, SNI names,
//! uniqueness, references); whether the PEM parses and the key matches its certificate is
//! checked when the snapshot compiles them, at the same positions.

use super::Cx;
use super::raw::{RawCertificate, RawKong, RawRef, RawService, RawSniOrName};
use crate::config::diag::Path;
use crate::config::model::{CaCertificate, Certificate, Pem, derived_id};

impl<'r> Cx<'_, 'r> {
    /// Every certificate, SNI and CA certificate of the file, before the services that name
    /// them.
    pub(super) fn tls_entities(&mut self, raw: &'r RawKong) {
        let root = Path::root();
        for (i, c) in raw.certificates.iter() {
            self.certificate(c, &root.key("certificates").index(i));
        }
        for (i, s) in raw.snis.iter() {
            let path = root.key("snis").index(i);
            let Some(name) = &s.name else {
                self.diags
                    .error(self.file, &path, "required field missing: `name`");
                continue;
            };
            let Some(cert) = &s.certificate else {
                self.diags
                    .error(self.file, &path, "required field missing: `certificate`");
                continue;
            };
            if let Some(idx) = self.certificate_ref(cert, &path.key("certificate")) {
                self.sni(idx, name, &path.key("name"));
            }
        }
        for (i, c) in raw.ca_certificates.iter() {
            let path = root.key("ca_certificates").index(i);
            let Some(cert) = &c.cert else {
                self.diags
                    .error(self.file, &path, "required field missing: `cert` (PEM)");
                continue;
            };
            let id =
                c.id.clone()
                    .unwrap_or_else(|| derived_id("ca_certificates", cert));
            let idx = self.model.ca_certificates.len();
            if self.ca_by_id.insert(id.clone(), idx).is_some() {
                self.diags.error(self.file, &path.key("id"), format!("uniqueness violation: 'ca_certificates' entity with id set to '{id}' already declared"));
            }
            let pem = self.pem(cert, &path.key("cert"));
            self.model.ca_certificates.push(CaCertificate {
                id,
                cert: pem,
                tags: c.tags.clone().unwrap_or_default(),
                origin: self.origin(&path),
            });
        }
    }

    fn certificate(&mut self, c: &'r RawCertificate, path: &Path) {
        let (Some(cert), Some(key)) = (&c.cert, &c.key) else {
            self.diags.error(
                self.file,
                path,
                "a certificate needs both `cert` and `key` (PEM)",
            );
            return;
        };
        let alt = match (&c.cert_alt, &c.key_alt) {
            (Some(ca), Some(ka)) => Some((
                self.pem(ca, &path.key("cert_alt")),
                self.pem(ka, &path.key("key_alt")),
            )),
            (None, None) => None,
            _ => {
                self.diags.error(
                    self.file,
                    path,
                    "`cert_alt` and `key_alt` go together: give both or neither",
                );
                None
            }
        };
        let id =
            c.id.clone()
                .unwrap_or_else(|| derived_id("certificates", cert));
        let idx = self.model.certificates.len();
        if self.certificates_by_id.insert(id.clone(), idx).is_some() {
            self.diags.error(self.file, &path.key("id"), format!("uniqueness violation: 'certificates' entity with id set to '{id}' already declared"));
        }
        let cert = self.pem(cert, &path.key("cert"));
        let key = self.pem(key, &path.key("key"));
        self.model.certificates.push(Certificate {
            id,
            cert,
            key,
            alt,
            snis: Vec::new(),
            tags: c.tags.clone().unwrap_or_default(),
            origin: self.origin(path),
        });
        for (i, s) in c.snis.iter() {
            let name = match s {
                RawSniOrName::Name(n) => n,
                RawSniOrName::Sni { name, .. } => name,
            };
            let at = path.key("snis").index(i);
            let at = match s {
                RawSniOrName::Name(_) => at,
                RawSniOrName::Sni { .. } => at.key("name"),
            };
            self.sni(idx, name, &at);
        }
    }

    fn pem(&self, text: &str, path: &Path) -> Pem {
        Pem {
            text: text.to_string(),
            origin: self.origin(path),
        }
    }

    /// An SNI of certificate `idx`: a host name, `*.example.com` or `example.*`, unique.
    fn sni(&mut self, idx: usize, name: &str, path: &Path) {
        if let Err(e) = check_sni(name) {
            self.diags
                .error(self.file, path, format!("invalid SNI \"{name}\": {e}"));
            return;
        }
        let name = name.to_ascii_lowercase();
        if self.sni_names.insert(name.clone()) {
            self.model.certificates[idx].snis.push(name);
        } else {
            self.diags.error(
                self.file,
                path,
                format!(
                    "uniqueness violation: 'snis' entity with name set to '{name}' already declared"
                ),
            );
        }
    }

    fn certificate_ref(&mut self, r: &RawRef, path: &Path) -> Option<usize> {
        let key = r.key().unwrap_or_default();
        let found = self.certificates_by_id.get(key).copied();
        if found.is_none() {
            self.diags.error(
                self.file,
                path,
                format!("invalid reference 'certificate: {key}' (no such entry in 'certificates')"),
            );
        }
        found
    }

    /// A service's `client_certificate` and `ca_certificates`, as model indexes.
    pub(super) fn service_tls_refs(
        &mut self,
        s: &RawService,
        path: &Path,
    ) -> (Option<usize>, Vec<usize>) {
        let client = s
            .client_certificate
            .as_ref()
            .and_then(|r| self.certificate_ref(r, &path.key("client_certificate")));
        let mut cas = Vec::new();
        for (i, id) in s.ca_certificates.iter().flatten().enumerate() {
            match self.ca_by_id.get(id.as_str()) {
                Some(idx) => cas.push(*idx),
                None => self.diags.error(
                    self.file,
                    &path.key("ca_certificates").index(i),
                    format!("invalid reference 'ca_certificate: {id}' (no such entry in 'ca_certificates')"),
                ),
            }
        }
        (client, cas)
    }
}

/// Kong's SNI rule: a host name with at most one wildcard, as the whole leftmost or
/// rightmost label; no port, no IP address.
fn check_sni(name: &str) -> Result<(), &'static str> {
    if name.contains(':') {
        return Err("an SNI has no port");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("an IP address is not a server name");
    }
    if name == "*" {
        return Ok(()); // Kong's catch-all: served when no other SNI matches
    }
    let stars = name.matches('*').count();
    if stars > 1 {
        return Err("only one wildcard is allowed");
    }
    if stars == 1 && !(name.starts_with("*.") || name.ends_with(".*")) {
        return Err("the wildcard must be the whole leftmost or rightmost label");
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*' | '_'))
    {
        return Err("not a valid host name");
    }
    Ok(())
}
