//! Validates the impl block under `#[projection]` into the model `expand`
//! works from.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{FnArg, ImplItem, ItemImpl, ReturnType, Type};

use super::attr::ProjectionArgs;
use crate::common;
use crate::ctxt::Ctxt;

/// One validated handler method.
pub(crate) struct Handler {
    pub(crate) method: syn::Ident,
    pub(crate) event: Type,
    pub(crate) with_record: bool,
    pub(crate) is_async: bool,
    pub(crate) output: Type,
}

/// The `#[reset]` method: its name and whether it is `async`.
pub(crate) struct Reset {
    pub(crate) method: syn::Ident,
    pub(crate) is_async: bool,
}

// One model per macro call, never moved around: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Model {
    Impl {
        krate: TokenStream,
        /// The block, without the `#[reset]` helper attributes.
        item: ItemImpl,
        /// The stored name: `name = "..."` or the type's name.
        name: String,
        handlers: Vec<Handler>,
        reset: Option<Reset>,
        /// False when no `Projection` impl can be written for the block,
        /// not even a stub (a trait impl, generics).
        implementable: bool,
    },
    /// Not an impl block: re-emitted as is.
    Other(TokenStream),
}

pub(crate) fn parse(cx: &mut Ctxt, args: TokenStream, item: syn::Item) -> Model {
    let mut args = ProjectionArgs::parse(cx, args);
    let krate = common::krate(args.krate.take().map(|(_, path)| path));
    let syn::Item::Impl(mut item) = item else {
        cx.error_spanned_by(
            &item,
            "`#[projection]` goes on an inherent impl block whose methods handle events: `#[projection] impl MyView { .. }`",
        );
        return Model::Other(item.into_token_stream());
    };
    let mut implementable = true;
    if let Some((path, _)) = &item.trait_ {
        cx.error_spanned_by(
            path,
            "`#[projection]` goes on an inherent impl block, not a trait impl: write `impl MyView { .. }`",
        );
        implementable = false;
    }
    if !item.generics.params.is_empty() {
        cx.error_spanned_by(&item.generics, "projections cannot be generic: name a concrete type");
        implementable = false;
    }
    let name = match args.name.take() {
        Some((_, lit)) => check_name(cx, &lit),
        None => type_key(&item.self_ty),
    };
    let (handlers, reset, invalid) = collect_methods(cx, &mut item);
    if handlers.is_empty() && invalid == 0 {
        cx.error_spanned_by(
            &item.self_ty,
            "a projection needs at least one method taking an event: add one, like `fn on(&mut self, event: MyEvent) -> Result<(), MyError>`",
        );
    }
    Model::Impl { krate, item, name, handlers, reset, implementable }
}

/// A projection name keys its checkpoint: it cannot be empty or hold NUL.
fn check_name(cx: &mut Ctxt, lit: &syn::LitStr) -> String {
    let name = lit.value();
    if name.trim().is_empty() || name.contains('\0') {
        cx.error_spanned_by(
            lit,
            "a projection name cannot be blank or contain NUL: write a name such as `name = \"balances\"`",
        );
    }
    name
}

/// Finds the handlers and the `#[reset]` method of the block, stripping
/// `#[reset]` from the item. Also returns how many methods were invalid.
fn collect_methods(cx: &mut Ctxt, item: &mut ItemImpl) -> (Vec<Handler>, Option<Reset>, usize) {
    let mut handlers: Vec<Handler> = Vec::new();
    let mut reset: Option<Reset> = None;
    let mut invalid = 0;
    for impl_item in &mut item.items {
        let ImplItem::Fn(method) = impl_item else { continue };
        if !common::take_attrs(&mut method.attrs, "reset").is_empty() {
            if let Some(first) = &reset {
                cx.error_spanned_by(
                    &method.sig.ident,
                    format_args!("only one method can be `#[reset]`, and `{}` already is: remove one", first.method),
                );
            } else {
                reset = Some(Reset { method: method.sig.ident.clone(), is_async: method.sig.asyncness.is_some() });
            }
            continue;
        }
        let Some(handler) = handler(cx, &method.sig) else {
            invalid += 1;
            continue;
        };
        // The framework dictates the shape; lints against it are noise.
        method.attrs.push(syn::parse_quote!(
            #[allow(clippy::unnecessary_wraps, clippy::needless_pass_by_value, clippy::unused_self)]
        ));
        if let Some(first) = handlers.iter().find(|other| type_key(&other.event) == type_key(&handler.event)) {
            cx.error_spanned_by(
                &handler.event,
                format_args!(
                    "events of type `{}` already go to `{}`: a projection has one handler per event type; merge them",
                    type_key(&handler.event),
                    first.method
                ),
            );
        } else {
            handlers.push(handler);
        }
    }
    (handlers, reset, invalid)
}

/// The text of a type, for duplicate detection and default names.
pub(crate) fn type_key(ty: &Type) -> String {
    match ty {
        Type::Path(p) => p.path.segments.last().map_or_else(String::new, |s| s.ident.to_string()),
        other => quote!(#other).to_string().replace(' ', ""),
    }
}

/// Validates one handler's signature, recording every mistake; `None`
/// when there was any.
fn handler(cx: &mut Ctxt, sig: &syn::Signature) -> Option<Handler> {
    let mut ok = true;
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            "projection handlers cannot be generic: write one handler per concrete event type",
        );
        ok = false;
    }
    let ident = &sig.ident;
    let mut inputs = sig.inputs.iter().peekable();
    if let Some(FnArg::Receiver(r)) = inputs.peek() {
        if !matches!(r.kind, syn::ReceiverKind::Reference(_, _, Some(_))) {
            cx.error_spanned_by(r, "a projection handler takes `&mut self`: it updates the read model");
            ok = false;
        }
        inputs.next();
    } else {
        cx.error_spanned_by(
            ident,
            format_args!("`{ident}` needs a `&mut self` receiver to be a projection handler: write `fn {ident}(&mut self, event: MyEvent)`"),
        );
        ok = false;
    }
    let event = if let Some(FnArg::Typed(arg)) = inputs.next() {
        match &*arg.ty {
            Type::Path(_) => Some((*arg.ty).clone()),
            Type::Reference(r) => {
                cx.error_spanned_by(
                    r,
                    format_args!(
                        "take the event by value: `{}: {}`; the handler owns the decoded event",
                        arg.pat.to_token_stream(),
                        r.elem.to_token_stream()
                    ),
                );
                None
            }
            other => {
                cx.error_spanned_by(other, "the event parameter must be an event type, such as `event: AccountEvent`");
                None
            }
        }
    } else {
        cx.error_spanned_by(
            ident,
            format_args!("`{ident}` takes no event: write `fn {ident}(&mut self, event: MyEvent)`"),
        );
        None
    };
    let with_record = match inputs.next() {
        None => false,
        Some(FnArg::Typed(arg)) if matches!(&*arg.ty, Type::Reference(r) if r.mutability.is_none()) => true,
        Some(other) => {
            cx.error_spanned_by(other, "the optional second parameter is the stored record: `record: &RecordedEvent`");
            ok = false;
            false
        }
    };
    if let Some(extra) = inputs.next() {
        cx.error_spanned_by(
            extra,
            "a projection handler takes the event and, optionally, `record: &RecordedEvent`: remove this parameter",
        );
        ok = false;
    }
    let output = match &sig.output {
        ReturnType::Type(_, ty) if common::last_segment(ty).is_some_and(|s| s.ident == "Result") => {
            Some((**ty).clone())
        }
        ReturnType::Type(_, ty) => {
            cx.error_spanned_by(
                ty,
                "a projection handler returns `Result<(), E>` with `E` an error type: change this return type",
            );
            None
        }
        ReturnType::Default => {
            cx.error_spanned_by(ident, "a projection handler returns `Result<(), E>`: add `-> Result<(), MyError>`");
            None
        }
    };
    let (event, output) = (event?, output?);
    ok.then(|| Handler { method: ident.clone(), event, with_record, is_async: sig.asyncness.is_some(), output })
}
