"""pkid_fuzz_target: a libFuzzer binary for one parser.

Build with --config=fuzz (clang, ASan, UBSan, coverage instrumentation) and
run it on its corpus folder tests/fuzz/corpus/<name>/. Tagged manual so that
`bazel test //...` does not build it in other configurations."""

load("@rules_cc//cc:defs.bzl", "cc_binary")
load("//bazel:copts.bzl", "PKID_COPTS")

def pkid_fuzz_target(name, deps):
    cc_binary(
        name = name,
        srcs = [name + ".c"],
        copts = PKID_COPTS,
        linkopts = ["-fsanitize=fuzzer"],
        tags = ["manual"],
        deps = deps,
    )
