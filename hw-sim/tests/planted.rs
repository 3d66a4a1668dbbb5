//! What a local user can plant where the simulated cards live: a symbolic link or a FIFO
//! at a card's file, a file too large for any card, a card directory others can write.
//! Each is refused at once, naming the file, and nothing is read through it (found by the
//! durable-files review: a link was followed, a FIFO blocked with the card's lock held).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use mkclone_backend::{Backend, SerialNumber};
use mkclone_hw_sim::{Apqn, SimBus, StoreError};

fn bus_with_two_cards() -> (tempfile::TempDir, SimBus) {
    let dir = tempfile::tempdir().unwrap();
    let bus = SimBus::new(dir.path().join("cards"));
    for (card, serial) in [(1, "REAL0001"), (2, "EVIL0002")] {
        bus.create_card(
            Apqn::new(card, 0x0d).unwrap(),
            &SerialNumber::new(serial).unwrap(),
        )
        .unwrap();
    }
    (dir, bus)
}

fn card(n: u8) -> Apqn {
    Apqn::new(n, 0x0d).unwrap()
}

/// The card's first request, which reads its file: its error, within a second.
fn first_request_fails(bus: &SimBus, apqn: Apqn) -> String {
    let started = Instant::now();
    let error = match bus.open_card(apqn) {
        Err(e) => e.to_string(),
        Ok(mut node) => node.status().unwrap_err().to_string(),
    };
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}: {error}",
        started.elapsed()
    );
    error
}

#[test]
fn a_link_at_a_card_file_is_not_followed() {
    let (_dir, bus) = bus_with_two_cards();
    let real = bus.card_path(card(1));
    std::fs::remove_file(&real).unwrap();
    std::os::unix::fs::symlink(bus.card_path(card(2)), &real).unwrap();
    let error = first_request_fails(&bus, card(1));
    assert!(error.contains("symbolic link"), "{error}");
    assert!(!error.contains("EVIL0002"), "{error}");
}

#[test]
fn a_fifo_at_a_card_file_is_refused_without_blocking() {
    let (_dir, bus) = bus_with_two_cards();
    let real = bus.card_path(card(1));
    std::fs::remove_file(&real).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&real)
        .status()
        .expect("mkfifo (coreutils)");
    assert!(made.success());
    let error = first_request_fails(&bus, card(1));
    assert!(
        error.contains("not a regular file") || error.contains("FIFO"),
        "{error}"
    );
}

#[test]
fn a_card_file_larger_than_any_card_is_refused_unread() {
    let (_dir, bus) = bus_with_two_cards();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(bus.card_path(card(1)))
        .unwrap();
    // Sparse: 1 TiB that takes no room, which a read into memory would not survive.
    file.set_len(1 << 40).unwrap();
    let error = first_request_fails(&bus, card(1));
    assert!(error.contains("not a card file"), "{error}");
}

#[test]
fn a_card_directory_others_can_write_is_refused() {
    let (_dir, bus) = bus_with_two_cards();
    std::fs::set_permissions(bus.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    match bus.open_card(card(1)) {
        Err(e @ StoreError::DirNotPrivate { .. }) => {
            let error = e.to_string();
            assert!(
                error.contains(&bus.dir().display().to_string()) && error.contains("chmod 700"),
                "{error}"
            );
        }
        Err(other) => panic!("expected the directory refused, got {other}"),
        Ok(_) => panic!("a card directory others can write was used"),
    }
    // Made by create_card, it is private.
    let (_dir, bus) = bus_with_two_cards();
    let mode = std::fs::metadata(bus.dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}
