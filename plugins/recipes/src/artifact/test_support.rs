//! Builders shared by the artifact tests: archives made in memory with the
//! same crates that read them, keys, and file helpers.

use std::fs;
use std::io::{Cursor, Write as _};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use sha2::{Digest as _, Sha256};
use zip::write::SimpleFileOptions;

use super::verify::to_hex;

/// One tar entry, written with raw header bytes so that hostile paths (which
/// `tar::Builder`'s path setters refuse) can be made too.
pub enum TarItem<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
}

pub fn tar(items: &[TarItem<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        let (name, kind, data, mode, link): (&str, tar::EntryType, &[u8], u32, &str) = match item {
            TarItem::File(name, data, mode) => (name, tar::EntryType::Regular, data, *mode, ""),
            TarItem::Dir(name) => (name, tar::EntryType::Directory, b"", 0o755, ""),
            TarItem::Symlink(name, to) => (name, tar::EntryType::Symlink, b"", 0o777, to),
            TarItem::Hardlink(name, to) => (name, tar::EntryType::Link, b"", 0o644, to),
            TarItem::Fifo(name) => (name, tar::EntryType::Fifo, b"", 0o644, ""),
        };
        let gnu = header.as_gnu_mut().expect("gnu header");
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).expect("append");
    }
    builder.into_inner().expect("tar")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

pub enum ZipItem<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

pub fn zip(items: &[ZipItem<'_>]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for item in items {
        match item {
            ZipItem::File(name, data, mode) => {
                writer
                    .start_file(*name, options.unix_permissions(*mode))
                    .expect("start");
                writer.write_all(data).expect("write");
            }
            ZipItem::Dir(name) => writer.add_directory(*name, options).expect("dir"),
            ZipItem::Symlink(name, to) => writer.add_symlink(*name, *to, options).expect("link"),
        }
    }
    writer.finish().expect("zip").into_inner()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

pub fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).expect("key")
}

pub fn public_pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem")
}

/// DER, like `openssl dgst -sha256 -sign`.
pub fn sign_der(key: &SigningKey, bytes: &[u8]) -> Vec<u8> {
    let signature: Signature = key.sign(bytes);
    signature.to_der().as_bytes().to_vec()
}

pub fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(path, bytes).expect("write");
    path.to_path_buf()
}

pub fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Every path below `dir`, relative and sorted (empty if `dir` is missing).
pub fn listing(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(items) = fs::read_dir(dir) else { return };
        for item in items.flatten() {
            let path = item.path();
            let rel = path
                .strip_prefix(root)
                .expect("prefix")
                .display()
                .to_string();
            out.push(rel);
            if item.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
