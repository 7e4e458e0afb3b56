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

/// One handler: a method of an aggregate or a free async function.
pub(crate) struct Handler {
    pub(crate) ident: syn::Ident,
    pub(crate) is_async: bool,
    pub(crate) has_receiver: bool,
    pub(crate) requires: Requires,
    pub(crate) command: Type,
    pub(crate) command_name: String,
    pub(crate) service: Option<Type>,
    pub(crate) ok: Type,
    pub(crate) err: Type,
}

impl Handler {
    /// Replaces `Self` in the signature's types with the aggregate's type.
    fn replace_self(&mut self, aggregate: &Type) {
        for ty in [&mut self.command, &mut self.ok, &mut self.err].into_iter().chain(self.service.as_mut()) {
            let replaced = replace_self(ty.to_token_stream(), &aggregate.to_token_stream());
            if let Ok(parsed) = syn::parse2(replaced) {
                *ty = parsed;
            }
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
    Impl { krate: TokenStream, item: syn::ItemImpl, handlers: Vec<Handler> },
    Fn { krate: TokenStream, item: syn::ItemFn, handler: Option<Handler> },
    Other(TokenStream),
}

pub(crate) fn parse(cx: &mut Ctxt, args: TokenStream, item: syn::Item) -> Model {
    let krate = common::krate(attr::parse_handler_args(cx, args));
    match item {
        syn::Item::Impl(mut item) => {
            if let Some((_, path, _)) = &item.trait_ {
                cx.error_spanned_by(path, "`#[command_handler]` goes on an inherent impl block of an aggregate (`impl Account { .. }`), not on a trait impl");
            }
            if !item.generics.params.is_empty() {
                cx.error_spanned_by(&item.generics, "`#[command_handler]` does not support generic impl blocks: write the handlers for a concrete aggregate type");
            }
            let mut handlers: Vec<Handler> = Vec::new();
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
                let Some(mut handler) = handler(cx, &method.sig, true) else { continue };
                // The framework dictates the shape (a `Result`, the command
                // by value), so lints against that shape are noise.
                method.attrs.push(syn::parse_quote!(
                    #[allow(clippy::unnecessary_wraps, clippy::needless_pass_by_value, clippy::unused_self)]
                ));
                // The generated impls are for the command, where `Self` is
                // no longer the aggregate.
                handler.replace_self(&item.self_ty);
                if let Some((_, value)) = requires {
                    handler.requires = value;
                }
                let key = handler.command.to_token_stream().to_string();
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
            Model::Impl { krate, item, handlers }
        }
        syn::Item::Fn(mut item) => {
            item.attrs.push(syn::parse_quote!(#[allow(clippy::needless_pass_by_value)]));
            let mut handler = handler(cx, &item.sig, false);
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
            Model::Fn { krate, item, handler }
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

/// Validates one handler's signature; `None` (with errors recorded) when
/// no impl can be generated for it.
fn handler(cx: &mut Ctxt, sig: &syn::Signature, in_impl: bool) -> Option<Handler> {
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
            receiver.reference.is_some() && receiver.mutability.is_none() && receiver.colon_token.is_none();
        if !shared_ref {
            cx.error_spanned_by(
                receiver,
                "a command handler takes `&self` (the aggregate must exist) or no receiver (the command creates it): the state only changes by applying the returned events",
            );
            ok = false;
        }
    }
    let command = command_param(cx, inputs.next(), sig, in_impl);
    let service = match inputs.next() {
        None => None,
        Some(arg) => {
            let service = service_param(cx, arg);
            ok &= service.is_some();
            service
        }
    };
    let extra: Vec<&FnArg> = inputs.collect();
    if let Some(first) = extra.first() {
        cx.error_spanned_by(
            first,
            "a command handler takes at most two parameters: the command and one service by reference (group several services in one struct)",
        );
        ok = false;
    }
    let result = return_type(cx, sig);
    let (command, (ok_ty, err_ty)) = (command?, result?);
    if !ok {
        return None;
    }
    let command_name = common::last_segment(&command).map(|s| s.ident.to_string()).unwrap_or_default();
    Some(Handler {
        ident: sig.ident.clone(),
        is_async: sig.asyncness.is_some(),
        has_receiver,
        requires: if has_receiver { Requires::Existing } else { Requires::New },
        command,
        command_name,
        service,
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

/// The injected service: `&Service`.
fn service_param(cx: &mut Ctxt, arg: &FnArg) -> Option<Type> {
    match arg {
        FnArg::Typed(arg) => match &*arg.ty {
            Type::Reference(reference) if reference.mutability.is_none() => Some((*reference.elem).clone()),
            other => {
                cx.error_spanned_by(
                    other,
                    format_args!(
                        "the second parameter is an injected service, taken by shared reference: `{}: &{}`",
                        arg.pat.to_token_stream(),
                        strip_ref(other).to_token_stream()
                    ),
                );
                None
            }
        },
        FnArg::Receiver(receiver) => {
            cx.error_spanned_by(receiver, "unexpected receiver");
            None
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

fn strip_ref(ty: &Type) -> &Type {
    match ty {
        Type::Reference(reference) => &reference.elem,
        other => other,
    }
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
