//! Validates the handlers under `#[command_handler]`.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{FnArg, ImplItem, Type};

use super::attr::{self, Requires};
use crate::common;
use crate::ctxt::Ctxt;

/// How the handler's `Ok` type becomes `Vec<Event>`, decided from the
/// type's last path segment.
pub(crate) enum Output {
    /// `Event`: a one-element vec.
    One(Type),
    /// `Vec<Event>`: as is.
    Many(Type),
    /// `Option<Event>`: zero or one element.
    Maybe(Type),
}

/// A parameter after the command, in the order written.
// A few per handler, never moved around: the size of `Type` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(crate) enum Extra {
    /// `id: &Self::Id`: the id of the aggregate the command was sent to.
    Id,
    /// `svc: &Service`: a service registered with the application.
    Service(Type),
}

/// One handler: a method of an aggregate or a free async function.
pub(crate) struct Handler {
    pub(crate) ident: syn::Ident,
    pub(crate) is_async: bool,
    pub(crate) has_receiver: bool,
    pub(crate) requires: Requires,
    pub(crate) command: Type,
    pub(crate) command_name: String,
    /// The service, if one of the extra parameters is one.
    pub(crate) service: Option<Type>,
    /// The parameters after the command (the id, the service).
    pub(crate) extras: Vec<Extra>,
    pub(crate) ok: Type,
    pub(crate) err: Type,
}

/// What validating one handler's signature yields.
// One per method, consumed at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Checked {
    Valid(Handler),
    /// Errors were recorded, and the command type is known.
    Stub(Stub),
    /// Errors were recorded, and there is no command type.
    Invalid,
}

/// A handler whose signature has errors but whose command type is known:
/// it gets an impl that never runs, so that sending the command reports
/// nothing beyond the handler's own errors.
pub(crate) struct Stub {
    pub(crate) command: Type,
    pub(crate) command_name: String,
    /// The `Ok` and `Err` types, when the return type is a `Result`: a
    /// standalone stub keeps them, so that the caller's use of the
    /// outcome adds no error either.
    pub(crate) result: Option<(Type, Type)>,
}

impl Handler {
    /// Replaces `Self` in the signature's types with the aggregate's type.
    fn replace_self(&mut self, aggregate: &Type) {
        let services = self.extras.iter_mut().filter_map(|extra| match extra {
            Extra::Service(ty) => Some(ty),
            Extra::Id => None,
        });
        for ty in
            [&mut self.command, &mut self.ok, &mut self.err].into_iter().chain(self.service.as_mut()).chain(services)
        {
            *ty = replace_self_in(ty, aggregate);
        }
    }

    pub(crate) fn output(&self) -> Output {
        let inner = common::last_segment(&self.ok).and_then(|segment| match common::type_args(segment)[..] {
            [inner] if segment.ident == "Vec" => Some(Output::Many(inner.clone())),
            [inner] if segment.ident == "Option" => Some(Output::Maybe(inner.clone())),
            _ => None,
        });
        inner.unwrap_or_else(|| Output::One(self.ok.clone()))
    }
}

// One model per macro call, never moved around: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Model {
    Impl {
        krate: TokenStream,
        item: syn::ItemImpl,
        handlers: Vec<Handler>,
        stubs: Vec<Stub>,
    },
    /// A free function: its handler, or the stub of its command when the
    /// signature has errors and the command type is known.
    Fn {
        krate: TokenStream,
        item: syn::ItemFn,
        handler: Option<Handler>,
        stub: Option<Stub>,
    },
    Other(TokenStream),
}

pub(crate) fn parse(cx: &mut Ctxt, args: TokenStream, item: syn::Item) -> Model {
    let krate = common::krate(attr::parse_handler_args(cx, args));
    match item {
        syn::Item::Impl(mut item) => {
            if let Some((path, _)) = &item.trait_ {
                cx.error_spanned_by(path, "`#[command_handler]` goes on an inherent impl block of an aggregate (`impl Account { .. }`), not on a trait impl");
            }
            if !item.generics.params.is_empty() {
                cx.error_spanned_by(&item.generics, "`#[command_handler]` does not support generic impl blocks: write the handlers for a concrete aggregate type");
            }
            let mut handlers: Vec<Handler> = Vec::new();
            let mut stubs: Vec<Stub> = Vec::new();
            for impl_item in &mut item.items {
                let ImplItem::Fn(method) = impl_item else { continue };
                let mut requires = None;
                for helper in common::take_attrs(&mut method.attrs, "command") {
                    match &helper.meta {
                        syn::Meta::List(list) => {
                            if let Some(value) = attr::parse_command_args(cx, list.tokens.clone()) {
                                requires = Some(value);
                            }
                        }
                        other => cx.error_spanned_by(other, "write `#[command(requires = new)]`, `existing` or `any`"),
                    }
                }
                let handler = handler(cx, &method.sig, true);
                // Also in invalid handlers: the id type must resolve, so
                // that the user sees the macro's error and no other.
                id_by_path(&mut method.sig, &krate);
                let mut handler = match handler {
                    Checked::Valid(handler) => handler,
                    Checked::Stub(stub) => {
                        let key = stub.command.to_token_stream().to_string();
                        let known = |ty: &Type| ty.to_token_stream().to_string() == key;
                        if !handlers.iter().any(|h| known(&h.command)) && !stubs.iter().any(|s| known(&s.command)) {
                            let mut stub = stub;
                            stub.command = replace_self_in(&stub.command, &item.self_ty);
                            stubs.push(stub);
                        }
                        continue;
                    }
                    Checked::Invalid => continue,
                };
                // The framework dictates the shape (a `Result`, the command
                // by value), so lints against that shape are noise.
                method.attrs.push(syn::parse_quote!(
                    #[allow(clippy::unnecessary_wraps, clippy::needless_pass_by_value, clippy::unused_self, clippy::trivially_copy_pass_by_ref)]
                ));
                // The generated impls are for the command, where `Self` is
                // no longer the aggregate.
                handler.replace_self(&item.self_ty);
                if let Some((_, value)) = requires {
                    handler.requires = value;
                }
                let key = handler.command.to_token_stream().to_string();
                stubs.retain(|stub| stub.command.to_token_stream().to_string() != key);
                if let Some(first) = handlers.iter().find(|h| h.command.to_token_stream().to_string() == key) {
                    cx.error_spanned_by(
                        &handler.command,
                        format_args!(
                            "command `{}` is already handled by `{}`: a command has exactly one handler; remove one of them",
                            handler.command_name, first.ident
                        ),
                    );
                    continue;
                }
                handlers.push(handler);
            }
            Model::Impl { krate, item, handlers, stubs }
        }
        syn::Item::Fn(mut item) => {
            item.attrs.push(syn::parse_quote!(#[allow(clippy::needless_pass_by_value)]));
            let (mut handler, stub) = match handler(cx, &item.sig, false) {
                Checked::Valid(handler) => (Some(handler), None),
                Checked::Stub(stub) => (None, Some(stub)),
                Checked::Invalid => (None, None),
            };
            if item.sig.asyncness.is_none() {
                // Stubbed: no impl whose body would add a second error.
                if let Some(handler) = &mut handler {
                    handler.is_async = false;
                }
                cx.error_spanned_by(
                    item.sig.fn_token,
                    "standalone command handlers must be `async`: write `async fn`, or move the handler into an aggregate's `#[command_handler] impl` block",
                );
            }
            Model::Fn { krate, item, handler, stub }
        }
        other => {
            cx.error_spanned_by(
                &other,
                "`#[command_handler]` applies to an aggregate's impl block or to a free `async fn`",
            );
            Model::Other(other.into_token_stream())
        }
    }
}

const RETURN_HINT: &str =
    "handlers return `Result<Event, Error>`, `Result<Vec<Event>, Error>` or `Result<Option<Event>, Error>`";

/// Validates one handler's signature. On errors (recorded), the stub of
/// its command when the command type is known.
fn handler(cx: &mut Ctxt, sig: &syn::Signature, in_impl: bool) -> Checked {
    let mut ok = true;
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &sig.generics,
            "command handlers cannot be generic: a command type has one concrete handler",
        );
        ok = false;
    }
    let mut inputs = sig.inputs.iter().peekable();
    let mut has_receiver = false;
    if let Some(FnArg::Receiver(receiver)) = inputs.peek() {
        inputs.next();
        has_receiver = true;
        let shared_ref =
            matches!(receiver.kind, syn::ReceiverKind::Reference(_, _, None)) && receiver.mutability.is_none();
        if !shared_ref {
            cx.error_spanned_by(
                receiver,
                "a command handler takes `&self` (the aggregate must exist) or no receiver (the command creates it): the state only changes by applying the returned events",
            );
            ok = false;
        }
    }
    let command = command_param(cx, inputs.next(), sig, in_impl);
    let mut extras: Vec<Extra> = Vec::new();
    for arg in inputs {
        match extra_param(cx, arg, in_impl, &extras) {
            Some(extra) => extras.push(extra),
            None => ok = false,
        }
    }
    let result = return_type(cx, sig);
    let Some(command) = command else { return Checked::Invalid };
    let command_name = common::last_segment(&command).map(|s| s.ident.to_string()).unwrap_or_default();
    let Some((ok_ty, err_ty)) = result.filter(|_| ok) else {
        let result = result.map(|(ok, err)| (ok.clone(), err.clone()));
        return Checked::Stub(Stub { command, command_name, result });
    };
    let service = extras.iter().find_map(|extra| match extra {
        Extra::Service(ty) => Some(ty.clone()),
        Extra::Id => None,
    });
    Checked::Valid(Handler {
        ident: sig.ident.clone(),
        is_async: sig.asyncness.is_some(),
        has_receiver,
        requires: if has_receiver { Requires::Existing } else { Requires::New },
        command,
        command_name,
        service,
        extras,
        ok: ok_ty.clone(),
        err: err_ty.clone(),
    })
}

/// The command: the first parameter after the receiver, by value.
fn command_param(cx: &mut Ctxt, arg: Option<&FnArg>, sig: &syn::Signature, in_impl: bool) -> Option<Type> {
    if let Some(FnArg::Typed(arg)) = arg {
        match &*arg.ty {
            ty @ Type::Path(_) => Some(ty.clone()),
            Type::Reference(reference) => {
                cx.error_spanned_by(
                    reference,
                    format_args!(
                        "take the command by value: `{}: {}`",
                        arg.pat.to_token_stream(),
                        reference.elem.to_token_stream()
                    ),
                );
                None
            }
            other => {
                cx.error_spanned_by(other, "the command parameter must be a command type, such as `cmd: OpenAccount`");
                None
            }
        }
    } else {
        let what =
            if in_impl { "a method of a `#[command_handler]` impl block" } else { "a standalone command handler" };
        cx.error_spanned_by(
            &sig.ident,
            format_args!(
                "{what} takes the command as its first parameter: add one, as in `fn {}(&self, cmd: MyCommand)`",
                sig.ident
            ),
        );
        None
    }
}

/// A parameter after the command: the aggregate's id (`&Self::Id`, in an
/// aggregate's block) or an injected service (`&Service`), each at most
/// once.
fn extra_param(cx: &mut Ctxt, arg: &FnArg, in_impl: bool, before: &[Extra]) -> Option<Extra> {
    let arg = match arg {
        FnArg::Typed(arg) => arg,
        FnArg::Receiver(receiver) => {
            cx.error_spanned_by(receiver, "a receiver comes first: write `&self` before the command");
            return None;
        }
    };
    let pat = arg.pat.to_token_stream();
    let (inner, by_shared_ref) = match &*arg.ty {
        Type::Reference(reference) => (&*reference.elem, reference.mutability.is_none()),
        other => (other, false),
    };
    if is_self_id(inner) {
        if !in_impl {
            cx.error_spanned_by(
                &arg.ty,
                "a standalone command handler belongs to no aggregate, so it has no aggregate id: remove this parameter, or put the id in the command",
            );
            return None;
        }
        if !by_shared_ref {
            cx.error_spanned_by(
                &arg.ty,
                format_args!("take the aggregate's id by shared reference: `{pat}: &Self::Id`"),
            );
            return None;
        }
        if before.iter().any(|extra| matches!(extra, Extra::Id)) {
            cx.error_spanned_by(arg, "the handler already takes the aggregate's id: remove this parameter");
            return None;
        }
        return Some(Extra::Id);
    }
    if !by_shared_ref {
        cx.error_spanned_by(
            &arg.ty,
            format_args!(
                "a parameter after the command is an injected service, taken by shared reference: `{pat}: &{}`{}",
                inner.to_token_stream(),
                if in_impl { ", or the aggregate's id: `id: &Self::Id`" } else { "" }
            ),
        );
        return None;
    }
    if before.iter().any(|extra| matches!(extra, Extra::Service(_))) {
        cx.error_spanned_by(
            arg,
            "a command handler takes at most one service: group several services in one struct, and register that",
        );
        return None;
    }
    Some(Extra::Service(inner.clone()))
}

/// `Self::Id` or `<Self as Aggregate>::Id`: the aggregate's id type.
fn is_self_id(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    let segments: Vec<String> = path.path.segments.iter().map(|s| s.ident.to_string()).collect();
    match &path.qself {
        None => segments == ["Self", "Id"],
        Some(qself) => {
            matches!(&*qself.ty, Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self"))
                && segments.last().is_some_and(|last| last == "Id")
        }
    }
}

/// Rewrites `Self::Id` in the method's parameters (`&Self::Id`, or a
/// misused `Self::Id`, `&mut Self::Id`) to `<Self as Aggregate>::Id`,
/// which also resolves in an inherent impl block.
fn id_by_path(sig: &mut syn::Signature, krate: &TokenStream) {
    for arg in &mut sig.inputs {
        let FnArg::Typed(arg) = arg else { continue };
        let ty = match &mut *arg.ty {
            Type::Reference(reference) => &mut *reference.elem,
            other => other,
        };
        if is_self_id(ty) {
            let span = syn::spanned::Spanned::span(&*ty);
            *ty = syn::parse_quote_spanned!(span=> <Self as #krate::Aggregate>::Id);
        }
    }
}

/// `Result<Ok, Err>`, split.
fn return_type<'a>(cx: &mut Ctxt, sig: &'a syn::Signature) -> Option<(&'a Type, &'a Type)> {
    match &sig.output {
        syn::ReturnType::Default => {
            cx.error_at(sig.paren_token.span.join(), format_args!("missing return type: {RETURN_HINT}"));
            None
        }
        syn::ReturnType::Type(_, ty) => {
            let split = common::split_result(ty);
            if split.is_none() {
                cx.error_spanned_by(ty, format_args!("this return type is not a `Result`: {RETURN_HINT}"));
            }
            split
        }
    }
}

/// `ty` with every `Self` replaced by the aggregate's type.
fn replace_self_in(ty: &Type, aggregate: &Type) -> Type {
    syn::parse2(replace_self(ty.to_token_stream(), &aggregate.to_token_stream())).unwrap_or_else(|_| ty.clone())
}

/// Replaces every `Self` in `tokens` with `with`, keeping spans elsewhere.
fn replace_self(tokens: TokenStream, with: &TokenStream) -> TokenStream {
    tokens
        .into_iter()
        .map(|tree| match tree {
            proc_macro2::TokenTree::Ident(ident) if ident == "Self" => {
                let mut group = proc_macro2::Group::new(proc_macro2::Delimiter::None, with.clone());
                group.set_span(ident.span());
                proc_macro2::TokenTree::Group(group)
            }
            proc_macro2::TokenTree::Group(group) => {
                let mut new = proc_macro2::Group::new(group.delimiter(), replace_self(group.stream(), with));
                new.set_span(group.span());
                proc_macro2::TokenTree::Group(new)
            }
            other => other,
        })
        .collect()
}
