//! Reusable scratch memory, so that a loss called every training step allocates nothing
//! once warmed up.

use std::any::{Any, TypeId};

/// A bag of scratch buffers, one per scratch type, created on first use and reused after.
///
/// Losses keep their own scratch type in it (for example a distance matrix and the mined
/// indices): `workspace.get::<MyScratch>()` returns the same value on every call. Use one
/// workspace per thread.
#[derive(Default)]
pub struct Workspace {
    slots: Vec<(TypeId, Box<dyn Any + Send>)>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl Workspace {
    /// An empty workspace.
    pub fn new() -> Self {
        Self::default()
    }

    /// The scratch value of type `S`, created with `S::default()` the first time.
    pub fn get<S: Any + Send + Default>(&mut self) -> &mut S {
        let id = TypeId::of::<S>();
        let at = match self.slots.iter().position(|(t, _)| *t == id) {
            Some(at) => at,
            None => {
                self.slots.push((id, Box::new(S::default())));
                self.slots.len() - 1
            }
        };
        self.slots[at]
            .1
            .downcast_mut::<S>()
            .expect("slot type matches its TypeId")
    }

    /// Drops every scratch buffer (to give memory back after a large batch).
    pub fn clear(&mut self) {
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_type_same_slot() {
        let mut ws = Workspace::new();
        ws.get::<Vec<f32>>().push(1.0);
        ws.get::<Vec<f64>>().push(2.0);
        assert_eq!(ws.get::<Vec<f32>>(), &vec![1.0]);
        assert_eq!(ws.get::<Vec<f64>>(), &vec![2.0]);
    }
}
