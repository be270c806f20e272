//! Helpers for tests and fuzzing, shared by the crate's tests, `rust/tests` and the Python
//! bindings: random documents drawn under the matcher's mask, a check that the matcher accepts
//! an id sequence, and the small seedable generator behind them.

use crate::error::DecodeError;
use crate::Tokenizer;

/// A small, seedable generator (SplitMix64) for random walks: no dependency, same stream on
/// every platform.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`; the modulo bias is negligible for small `n`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

impl Tokenizer {
    /// A random document drawn under the matcher's mask: at each step a uniformly random
    /// allowed id (a closing id with probability 1/4 when one is allowed, so documents stay
    /// small); after `max_tokens` ids the smallest valid completion closes it. Used to fuzz the
    /// matcher: every result must validate against the schema. An empty mask before the
    /// document is complete is reported as an error (it would be a matcher bug).
    pub fn random_document(
        &self,
        seed: u64,
        max_tokens: usize,
    ) -> Result<(Vec<u32>, String), DecodeError> {
        let mut rng = SplitMix64(seed);
        let mut m = self.matcher();
        let mut allowed = vec![false; self.vocab_size() as usize];
        let mut ids = Vec::new();
        let closing = [crate::base::STR_END, crate::base::ARR_END, crate::base::END];
        while !m.is_complete() && ids.len() < max_tokens {
            m.fill_allowed(&mut allowed);
            let choices: Vec<u32> = (0..allowed.len() as u32)
                .filter(|&i| allowed[i as usize])
                .collect();
            if choices.is_empty() {
                return Err(DecodeError::new(
                    ids.len(),
                    "the mask is empty before the document is complete",
                ));
            }
            let closers: Vec<u32> = closing
                .iter()
                .copied()
                .filter(|&c| allowed[c as usize])
                .collect();
            let t = if !closers.is_empty() && rng.below(4) == 0 {
                closers[rng.below(closers.len())]
            } else {
                choices[rng.below(choices.len())]
            };
            m.advance(t)?;
            ids.push(t);
        }
        let doc = m.document(true)?;
        Ok((ids, doc))
    }

    /// Check that the matcher accepts `ids` id by id and ends complete; every `check_every`
    /// steps it also checks that the id was in the allowed mask (0: never).
    pub fn matcher_accepts(&self, ids: &[u32], check_every: usize) -> Result<(), DecodeError> {
        let mut m = self.matcher();
        let mut allowed = vec![false; self.vocab_size() as usize];
        for (i, &id) in ids.iter().enumerate() {
            if check_every > 0 && i % check_every == 0 {
                m.fill_allowed(&mut allowed);
                if !allowed.get(id as usize).copied().unwrap_or(false) {
                    return Err(DecodeError::new(
                        i,
                        format!("id {id} is not in the allowed mask"),
                    ));
                }
            }
            m.advance(id)?;
        }
        if !m.is_complete() {
            return Err(DecodeError::new(
                ids.len(),
                "the matcher is not complete at the end",
            ));
        }
        Ok(())
    }
}
