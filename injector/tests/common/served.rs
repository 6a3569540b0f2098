//! What the certificate tests look at: the certificate a server presents,
//! and files replaced the way Kubernetes replaces them.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::builder_trusting;

pub fn der_of(pem_path: &std::path::Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem_path).unwrap().to_vec()
}

/// Replaces a file the way a Secret volume or cert-manager does: atomically.
pub fn replace(from: &std::path::Path, to: &std::path::Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

pub fn client_with_tls_info(ca_pem: &[u8], fresh_connections: bool) -> reqwest::Client {
    let mut b = builder_trusting(ca_pem).tls_info(true);
    if fresh_connections {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().unwrap()
}

pub async fn served_cert(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, reqwest::Error> {
    let resp = client.get(url).send().await?;
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    Ok(info)
}
