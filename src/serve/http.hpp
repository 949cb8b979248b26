#pragma once
// cpp-httplib as Debian ships it: a compiled library (link -lcpp-httplib) built with OpenSSL, zlib
// and Brotli support. Those macros change the layout of httplib's classes, so every file that
// includes httplib must define them exactly as the library was built: include this header, never
// <httplib.h> directly.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif
#include <httplib.h>
