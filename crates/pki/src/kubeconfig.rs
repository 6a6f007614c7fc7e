//! Kubeconfig files with embedded base64 certificates, written as plain YAML.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// How the kubeconfig's user authenticates.
pub(crate) enum Auth<'a> {
    /// Client certificate and key, PEM.
    Cert {
        /// PEM certificate.
        cert_pem: &'a [u8],
        /// PEM private key.
        key_pem: &'a [u8],
    },
    /// A bearer (bootstrap) token.
    Token(&'a str),
}

/// A YAML double-quoted scalar: JSON string syntax is valid YAML and escapes everything needed.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

/// Renders a kubeconfig with one cluster, one user and one context, deterministically.
pub(crate) fn render(
    cluster: &str,
    server: &str,
    ca_pem: &[u8],
    user: &str,
    auth: Auth<'_>,
) -> Vec<u8> {
    let context = format!("{user}@{cluster}");
    let credentials = match auth {
        Auth::Cert { cert_pem, key_pem } => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            STANDARD.encode(cert_pem),
            STANDARD.encode(key_pem)
        ),
        Auth::Token(token) => format!("    token: {}\n", q(token)),
    };
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: {cluster}\n\
         contexts:\n\
         - context:\n    cluster: {cluster}\n    user: {user}\n  name: {context}\n\
         current-context: {context}\n\
         preferences: {{}}\n\
         users:\n\
         - name: {user}\n  user:\n{credentials}",
        ca = STANDARD.encode(ca_pem),
        server = q(server),
        cluster = q(cluster),
        user = q(user),
        context = q(&context),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_every_string() {
        let out = render(
            "prod: \"east\"",
            "https://10.0.0.1:6443",
            b"CA",
            "system:node:n1",
            Auth::Token("abcdef.0123456789abcdef"),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("  name: \"prod: \\\"east\\\"\"\n"), "{text}");
        assert!(text.contains("    server: \"https://10.0.0.1:6443\"\n"));
        assert!(text.contains("    token: \"abcdef.0123456789abcdef\"\n"));
        assert!(text.contains("current-context: \"system:node:n1@prod: \\\"east\\\"\"\n"));
        assert!(text.contains("certificate-authority-data: Q0E=\n"));
    }
}
