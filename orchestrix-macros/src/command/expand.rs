//! Generates `AggregateCommand` per method and the aggregate's
//! `CommandSet`, or `StandaloneCommand` for a free function.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::attr::Requires;
use super::model::{Handler, Model, Output};

pub(crate) fn expand(model: &Model) -> TokenStream {
    match model {
        Model::Impl { krate, item, handlers } => {
            let aggregate = &item.self_ty;
            let checks = checks(krate);
            let impls = handlers.iter().map(|handler| aggregate_command(krate, aggregate, handler));
            let commands = handlers.iter().map(|handler| &handler.command);
            quote! {
                #item
                const _: () = {
                    #checks
                    #(#impls)*

                    #[automatically_derived]
                    impl #krate::CommandSet for #aggregate {
                        fn commands() -> #krate::__private::Vec<#krate::__private::CommandDescriptor> {
                            #krate::__private::Vec::from([
                                #(#krate::__private::CommandDescriptor::of::<#commands>()),*
                            ])
                        }
                    }
                };
            }
        }
        Model::Fn { krate, item, handler } => {
            let imp = handler.as_ref().map(|handler| standalone_command(krate, handler));
            if let Some(imp) = imp {
                quote! {
                    #item
                    const _: () = { #imp };
                }
            } else {
                quote!(#item)
            }
        }
        Model::Other(tokens) => tokens.clone(),
    }
}

/// Traits through which the handler's `Ok` and `Err` values reach the
/// aggregate's types: the identity when the types match, and otherwise one
/// error at the user's return type saying which type was expected.
fn checks(krate: &TokenStream) -> TokenStream {
    let vec = quote!(#krate::__private::Vec);
    quote! {
        #[diagnostic::on_unimplemented(
            message = "this handler returns `{Self}` events, but the aggregate's event type is `{__OrchestrixEvent}`",
            label = "expected `{__OrchestrixEvent}` here",
            note = "a handler returns the event type named in the aggregate's `#[aggregate(event = ...)]`"
        )]
        trait __OrchestrixIsEvent<__OrchestrixEvent>: ::core::marker::Sized {
            fn __orchestrix_one(self) -> #vec<__OrchestrixEvent>;
            fn __orchestrix_many(events: #vec<Self>) -> #vec<__OrchestrixEvent>;
            fn __orchestrix_maybe(event: ::core::option::Option<Self>) -> #vec<__OrchestrixEvent>;
        }

        impl<__OrchestrixEvent> __OrchestrixIsEvent<__OrchestrixEvent> for __OrchestrixEvent {
            #[inline]
            fn __orchestrix_one(self) -> #vec<__OrchestrixEvent> {
                #vec::from([self])
            }
            #[inline]
            fn __orchestrix_many(events: #vec<Self>) -> #vec<__OrchestrixEvent> {
                events
            }
            #[inline]
            fn __orchestrix_maybe(event: ::core::option::Option<Self>) -> #vec<__OrchestrixEvent> {
                ::core::iter::Iterator::collect(::core::iter::IntoIterator::into_iter(event))
            }
        }

        #[diagnostic::on_unimplemented(
            message = "this handler fails with `{Self}`, but the aggregate's error type is `{__OrchestrixError}`",
            label = "expected `{__OrchestrixError}` here",
            note = "a handler returns the error type named in the aggregate's `#[aggregate(error = ...)]`"
        )]
        trait __OrchestrixIsError<__OrchestrixError> {
            fn __orchestrix_error(self) -> __OrchestrixError;
        }

        impl<__OrchestrixError> __OrchestrixIsError<__OrchestrixError> for __OrchestrixError {
            #[inline]
            fn __orchestrix_error(self) -> __OrchestrixError {
                self
            }
        }
    }
}

fn requires(krate: &TokenStream, requires: Requires) -> TokenStream {
    match requires {
        Requires::New => quote!(#krate::Existence::New),
        Requires::Existing => quote!(#krate::Existence::Existing),
        Requires::Any => quote!(#krate::Existence::Any),
    }
}

fn aggregate_command(krate: &TokenStream, aggregate: &syn::Type, handler: &Handler) -> TokenStream {
    let Handler { ident, command, command_name, service, err, .. } = handler;
    let service_ty = service.as_ref().map_or_else(|| quote!(()), |service| quote!(#service));
    let requires = requires(krate, handler.requires);
    let receiver = handler.has_receiver.then(|| quote!(__orchestrix_aggregate,));
    let service_arg = service.as_ref().map(|_| quote!(__orchestrix_service));
    let call = quote!(<#aggregate>::#ident(#receiver self, #service_arg));
    let event = quote!(<#aggregate as #krate::Aggregate>::Event);
    let error = quote!(<#aggregate as #krate::Aggregate>::Error);
    let events = match handler.output() {
        Output::One(ty) => {
            quote_spanned!(ty.span()=> <#ty as __OrchestrixIsEvent<#event>>::__orchestrix_one(__orchestrix_ok))
        }
        Output::Many(ty) => {
            quote_spanned!(ty.span()=> <#ty as __OrchestrixIsEvent<#event>>::__orchestrix_many(__orchestrix_ok))
        }
        Output::Maybe(ty) => {
            quote_spanned!(ty.span()=> <#ty as __OrchestrixIsEvent<#event>>::__orchestrix_maybe(__orchestrix_ok))
        }
    };
    let error_value =
        quote_spanned!(err.span()=> <#err as __OrchestrixIsError<#error>>::__orchestrix_error(__orchestrix_err));
    let normalize = quote! {
        match __orchestrix_result {
            ::core::result::Result::Ok(__orchestrix_ok) => ::core::result::Result::Ok(#events),
            ::core::result::Result::Err(__orchestrix_err) => ::core::result::Result::Err(#error_value),
        }
    };
    let body = if handler.is_async {
        quote! {
            async move {
                let __orchestrix_result = #call.await;
                #normalize
            }
        }
    } else {
        quote! {
            let __orchestrix_result = #call;
            ::core::future::ready(#normalize)
        }
    };
    quote! {
        #[automatically_derived]
        impl #krate::AggregateCommand for #command {
            type Aggregate = #aggregate;
            type Service = #service_ty;
            const NAME: &'static str = #command_name;
            const REQUIRES: #krate::Existence = #requires;

            fn handle<'__orchestrix_a>(
                self,
                __orchestrix_aggregate: &'__orchestrix_a Self::Aggregate,
                __orchestrix_service: &'__orchestrix_a Self::Service,
            ) -> impl ::core::future::Future<Output = #krate::__private::HandlerResult<Self::Aggregate>>
                   + ::core::marker::Send
                   + '__orchestrix_a {
                #body
            }
        }
    }
}

fn standalone_command(krate: &TokenStream, handler: &Handler) -> TokenStream {
    let Handler { ident, command, command_name, service, ok, err, .. } = handler;
    let service_ty = service.as_ref().map_or_else(|| quote!(()), |service| quote!(#service));
    let service_arg = service.as_ref().map(|_| quote!(__orchestrix_service));
    // A non-async function was reported; its stub never runs.
    let body = if handler.is_async { quote!(#ident(self, #service_arg)) } else { quote!(::core::future::pending()) };
    quote! {
        #[automatically_derived]
        impl #krate::StandaloneCommand for #command {
            type Output = #ok;
            type Error = #err;
            type Service = #service_ty;
            const NAME: &'static str = #command_name;

            fn handle(
                self,
                __orchestrix_service: &Self::Service,
            ) -> impl ::core::future::Future<Output = ::core::result::Result<Self::Output, Self::Error>>
                   + ::core::marker::Send
                   + '_ {
                #body
            }
        }
    }
}
