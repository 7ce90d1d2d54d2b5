//! State kept per node (idle connections, lanes) in a table that grows as nodes join.
//!
//! A node keeps its index for the life of its module, even after it leaves (see [`super::Balancer::apply`]),
//! so an index taken by a request in flight never points at another node's state.

use std::sync::{Arc, PoisonError, RwLock};

/// One `T` per node index, made on first use.
pub struct PerNode<T> {
    items: RwLock<Vec<Arc<T>>>,
    make: Box<dyn Fn(usize) -> T + Send + Sync>,
}

impl<T> std::fmt::Debug for PerNode<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerNode").field("nodes", &self.len()).finish()
    }
}

impl<T> PerNode<T> {
    /// A table whose entry for node `index` is `make(index)`.
    pub fn new(make: impl Fn(usize) -> T + Send + Sync + 'static) -> Self {
        PerNode {
            items: RwLock::new(Vec::new()),
            make: Box::new(make),
        }
    }

    /// The state of node `index`, made (with any below it) if this is its first use.
    pub fn get(&self, index: usize) -> Arc<T> {
        if let Some(item) = self.items.read().unwrap_or_else(PoisonError::into_inner).get(index) {
            return Arc::clone(item);
        }
        let mut items = self.items.write().unwrap_or_else(PoisonError::into_inner);
        while items.len() <= index {
            let next = (self.make)(items.len());
            items.push(Arc::new(next));
        }
        Arc::clone(&items[index])
    }

    /// Every node's state made so far.
    pub fn all(&self) -> Vec<Arc<T>> {
        self.items.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many nodes have state.
    pub fn len(&self) -> usize {
        self.items.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no node has state yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_made_once_and_knows_its_index() {
        let table = PerNode::new(|index| std::sync::Mutex::new(index * 10));
        *table.get(2).lock().unwrap() += 1;
        assert_eq!(table.len(), 3);
        assert_eq!(*table.get(2).lock().unwrap(), 21, "the same entry, not a new one");
        assert_eq!(*table.get(0).lock().unwrap(), 0);
    }
}
