//! Tells an aggregate's inherent `apply` from `Aggregate::apply`, for
//! `#[aggregate]`, which forwards the trait method to the inherent one.
//!
//! Without an inherent method, `<A>::apply` names the trait method itself,
//! and forwarding to it would recurse ("function cannot return without
//! recursing", far from the mistake). The generated code pairs the two
//! functions: when they are the same function, method resolution picks
//! [`FindInherentApply`], whose check needs `A: ApplyMethod<A::Event>`,
//! which no type implements, so the user sees one error in their own
//! terms, at their type; otherwise it picks (through autoref)
//! [`FoundInherentApply`], whose check accepts any aggregate. A cast to
//! `&dyn ApplyMethod<_>` rather than a `where` bound keeps the error free
//! of a "required by a bound in" note naming these items.

use std::any::Any;
use std::marker::PhantomData;

use crate::aggregate::Aggregate;
use crate::aggregate::ApplyMethod;

/// The inherent-or-trait `apply` of `A` and the trait's own, side by side.
// Only built and dropped inside a generated `apply`.
#[allow(missing_debug_implementations)]
pub struct ApplyPair<A, F, G>(PhantomData<fn() -> A>, F, G);

impl<A, F, G> ApplyPair<A, F, G> {
    /// Pairs `<A>::apply` (first) with `<A as Aggregate>::apply`.
    pub fn new(found: F, trait_method: G) -> Self {
        Self(PhantomData, found, trait_method)
    }
}

/// A check to call with the aggregate, and the `apply` to call after it.
pub type Checked<T, A> = (fn(&T), fn(&mut A, &<A as Aggregate>::Event));

/// Picked when both functions are `Aggregate::apply`: its check fails.
pub trait FindInherentApply<A: Aggregate> {
    /// A check that fails to compile, and a function never called.
    fn inherent_apply(&self) -> Checked<dyn ApplyMethod<A::Event>, A>;
}

impl<A: Aggregate, Same> FindInherentApply<A> for ApplyPair<A, Same, Same> {
    fn inherent_apply(&self) -> Checked<dyn ApplyMethod<A::Event>, A> {
        (|_| {}, |_, _| {})
    }
}

/// Picked when the first function is the inherent one.
pub trait FoundInherentApply<F> {
    /// A check that accepts anything, and the inherent `apply`.
    fn inherent_apply(&self) -> (fn(&dyn Any), F);
}

impl<A, F: Copy, G> FoundInherentApply<F> for &ApplyPair<A, F, G> {
    fn inherent_apply(&self) -> (fn(&dyn Any), F) {
        (|_| {}, self.1)
    }
}
