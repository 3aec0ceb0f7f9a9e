//! DKIM signing of a 1 KiB message: the crypto and canonicalization cost per delivered message.
//!
//!   cargo bench -p weir-mail --bench dkim

use criterion::{Criterion, criterion_group, criterion_main};
use weir_mail::dkim::{KeyPair, KeySpec, from_domain};

fn message() -> Vec<u8> {
    let mut m = b"From: Ann <ann@acme.test>\r\nTo: bob@example.test\r\nSubject: hello\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <x@acme.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".to_vec();
    while m.len() < 1024 {
        m.extend_from_slice(b"The quick brown fox jumps over the lazy dog.\r\n");
    }
    m
}

fn sign(c: &mut Criterion) {
    let msg = message();
    for (name, spec) in [("rsa2048", KeySpec::Rsa2048), ("rsa1024", KeySpec::Rsa1024), ("ed25519", KeySpec::Ed25519)] {
        let signer = KeyPair::generate(spec).and_then(|k| k.signer("acme.test", "s1")).expect("signer");
        c.bench_function(&format!("dkim_sign_1KiB_{name}"), |b| b.iter(|| signer.signed(&msg).expect("sign")));
    }
    c.bench_function("from_domain_1KiB", |b| b.iter(|| from_domain(&msg)));
}

criterion_group!(benches, sign);
criterion_main!(benches);
