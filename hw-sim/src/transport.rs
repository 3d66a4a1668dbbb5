//! `SimTransport`: a simulated card behind `cca::Transport`. It receives the very bytes
//! the zcrypt ioctl would carry (CPRBX + parameter block), decodes them, runs the verb on
//! the card's state, and encodes the reply.

use log::debug;
use mkclone_backend::timing::{self, Category};
use mkclone_cca::rc::{rs, rt};
use mkclone_cca::verbs::{Reply, Request};
use mkclone_cca::{Transport, TransportError};

use crate::card;
use crate::fault::{Fault, FaultPlan};
use crate::store::{LOCK_WAIT, Store, StoreError};
use mkclone_cca::apqn::Apqn;

/// One simulated coprocessor domain.
pub struct SimTransport {
    apqn: Apqn,
    store: Store,
    faults: FaultPlan,
    requests: u64,
    /// The last request found the card held by another process: the next one does not
    /// wait again (a read is retried at once by `CcaBackend`, and a command reading a
    /// busy card several times must not wait each time).
    card_busy: bool,
    /// A simulated device latency added to every request (none by default).
    latency: std::time::Duration,
    /// Benchmarks: the seed every generated key is derived from (none by default).
    keygen_seed: Option<u64>,
}

impl SimTransport {
    pub fn new(apqn: Apqn, store: Store) -> Self {
        Self {
            apqn,
            store,
            faults: FaultPlan::new(),
            requests: 0,
            card_busy: false,
            latency: std::time::Duration::ZERO,
            keygen_seed: None,
        }
    }

    /// **Benchmarks only**: every RSA key this card generates comes from a generator
    /// seeded with `seed`, the card's APQN and the key's label, so that two runs of one
    /// ceremony (serial and parallel, or two builds) do the same work: the time an RSA key
    /// generation takes depends on where its primes fall, and varies by a factor of three
    /// between keys. Such keys are predictable by whoever knows the seed: no command,
    /// configuration or rehearsal can set it.
    pub fn set_keygen_seed(&mut self, seed: u64) {
        self.keygen_seed = Some(seed);
    }

    /// Add `latency` to every request, as the time a real coprocessor spends on it
    /// outside this process (the card's own work, the adapter's queue): the thread waits
    /// without using the CPU. For benchmarks that show what running targets in parallel
    /// gives on real cards, where each target's work happens in its own device; the
    /// simulator otherwise does the card's work (RSA) on this machine's CPU.
    pub fn set_latency(&mut self, latency: std::time::Duration) {
        self.latency = latency;
    }

    pub fn with_faults(mut self, faults: FaultPlan) -> Self {
        self.faults = faults;
        self
    }

    pub fn set_faults(&mut self, faults: FaultPlan) {
        self.faults = faults;
        self.requests = 0;
    }

    pub fn apqn(&self) -> Apqn {
        self.apqn
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Requests sent so far (what fault numbers count).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Decode, run and encode one request on the card, counted as the card's work
    /// (`timing::Category::Card`: on a real coprocessor it does not run on the host).
    fn run(&mut self, message: &[u8]) -> Result<Vec<u8>, TransportError> {
        timing::measure(Category::Card, || self.run_on_card(message))
    }

    fn run_on_card(&mut self, message: &[u8]) -> Result<Vec<u8>, TransportError> {
        let decoded = Request::from_message(message);
        let mut rng = rand::rng();
        let (function, domain, reply) = match decoded {
            Ok((header, request)) => {
                let function = request.function();
                let mut seeded = match (&request, self.keygen_seed) {
                    (Request::GenerateRetained { label, .. }, Some(seed)) => {
                        Some(keygen_rng(seed, self.apqn, label.as_str()))
                    }
                    _ => None,
                };
                let wait = if self.card_busy {
                    std::time::Duration::ZERO
                } else {
                    LOCK_WAIT
                };
                // A request that only reads the card runs without the copy of its state
                // that a change is made on.
                let result = self.store.read_or_change_within(
                    wait,
                    |state| card::execute_read(state, request).map(|out| out.reply),
                    |state, request| {
                        let out = match seeded.as_mut() {
                            Some(seeded) => card::execute(state, request, seeded),
                            None => card::execute(state, request, &mut rng),
                        };
                        (out.reply, out.changed)
                    },
                );
                self.card_busy = matches!(result, Err(StoreError::InUse { .. }));
                let reply = result.map_err(|e| TransportError::NotSent(e.to_string()))?;
                (function, header.domain, reply)
            }
            Err(e) => {
                debug!("card {}: malformed request: {e}", self.apqn);
                // A request the card cannot parse is answered, as CCA does, with codes
                // only; the function code is echoed when it is known.
                let function = message
                    .get(mkclone_cca::cprb::CPRBX_LEN..mkclone_cca::cprb::CPRBX_LEN + 2)
                    .and_then(|c| {
                        mkclone_cca::function::FunctionCode::from_bytes([c[0], c[1]]).ok()
                    });
                let reason = if function.is_some() {
                    rs::MALFORMED_REQUEST
                } else {
                    rs::UNKNOWN_FUNCTION
                };
                let Some(function) = function else {
                    return Err(TransportError::NotSent(format!(
                        "card {} rejected a request with an unknown function code",
                        self.apqn
                    )));
                };
                (function, self.apqn.domain, Reply::code(rt::ERROR, reason))
            }
        };
        reply
            .to_message(function, domain)
            .map_err(|e| TransportError::OutcomeUnknown(e.to_string()))
    }
}

/// The generator of a key under [`SimTransport::set_keygen_seed`]: `seed`, the card and
/// the label mixed (SHA-256) into a ChaCha seed.
fn keygen_rng(seed: u64, apqn: Apqn, label: &str) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(seed.to_be_bytes());
    h.update(apqn.to_string().as_bytes());
    h.update(label.as_bytes());
    rand::rngs::StdRng::from_seed(h.finalize().into())
}

impl Transport for SimTransport {
    fn backend_name(&self) -> &'static str {
        "sim"
    }

    fn is_real_device(&self) -> bool {
        false
    }

    fn domain(&self) -> u16 {
        self.apqn.domain
    }

    fn send(
        &mut self,
        request: &[u8],
        _reply_capacity: usize,
        _idempotent: bool,
    ) -> Result<Vec<u8>, TransportError> {
        self.requests += 1;
        if !self.latency.is_zero() {
            std::thread::sleep(self.latency);
        }
        match self.faults.take(self.requests) {
            None => self.run(request),
            Some(Fault::Reply {
                return_code,
                reason_code,
            }) => {
                let function = Request::from_message(request)
                    .map(|(_, r)| r.function())
                    .map_err(|e| TransportError::NotSent(e.to_string()))?;
                Reply::code(return_code, reason_code)
                    .to_message(function, self.apqn.domain)
                    .map_err(|e| TransportError::NotSent(e.to_string()))
            }
            Some(Fault::BeforeCard) => Err(TransportError::NotSent(format!(
                "injected fault: request {} to card {} was not delivered",
                self.requests, self.apqn
            ))),
            Some(Fault::AfterCard) => {
                self.run(request)?;
                Err(TransportError::OutcomeUnknown(format!(
                    "injected fault: card {} ran request {} but the reply was lost",
                    self.apqn, self.requests
                )))
            }
            Some(Fault::CorruptReply { offset }) => {
                let mut reply = self.run(request)?;
                if !reply.is_empty() {
                    let at = offset % reply.len();
                    reply[at] ^= 0x5A;
                }
                Ok(reply)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::RngExt;

    use super::*;

    fn draw(seed: u64, card: u8, label: &str) -> [u64; 4] {
        let mut rng = keygen_rng(seed, Apqn::new(card, 0x0d).unwrap(), label);
        std::array::from_fn(|_| rng.random())
    }

    /// One seed, card and label: one key, whatever ran before; any of the three changed:
    /// another.
    #[test]
    fn a_seeded_key_depends_on_the_seed_the_card_and_the_label_only() {
        assert_eq!(draw(7, 3, "A.CSR"), draw(7, 3, "A.CSR"));
        assert_ne!(draw(7, 3, "A.CSR"), draw(8, 3, "A.CSR"));
        assert_ne!(draw(7, 3, "A.CSR"), draw(7, 4, "A.CSR"));
        assert_ne!(draw(7, 3, "A.CSR"), draw(7, 3, "A.CSS"));
    }
}
