"""Output: progress lines, numbers with units, and each section's markdown tables."""
import sys


def progress(msg):
    """A progress line on stderr."""
    print(f"  ... {msg}", file=sys.stderr, flush=True)


def fmt_time(seconds):
    """A duration with a readable unit."""
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt(value, spec=".3g"):
    """A number, or '-' for None."""
    return "-" if value is None else format(value, spec)


def spread(s):
    """(max - min) / median of the repeats, in percent."""
    return f"{100 * (max(s['repeats_s']) - min(s['repeats_s'])) / s['median_s']:.0f}%"


def md_table(headers, rows):
    """A markdown table, columns padded to line up."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells[1:]])


def ceilings_table(recs):
    """The machine's GEMM rate and copy bandwidth."""
    rows = [(r["case"], fmt_time(r["median_s"]), fmt_time(min(r["repeats_s"])), spread(r),
             f"{r['gflops']:.1f} GFLOP/s" if "gflops" in r else f"{r['gbs']:.1f} GB/s") for r in recs]
    return md_table(["ceiling", "median", "best", "spread", "rate (best repeat)"], rows)


def calls_table(recs):
    """One cpp op call through torch.ops against minidl._C.direct."""
    rows = [(r["case"], r["variant"], fmt_time(r["median_s"]), spread(r), fmt(r.get("x_vs_torch"), ".2f"))
            for r in recs]
    return "\nOne call of a cpp op on the disk network's tensors (batch 1)\n\n" + md_table(
        ["call", "path", "median", "spread", "× vs torch.ops"], rows)


def ops_tables(recs):
    """Linear, then elementwise ops, forward + backward."""
    lin = [r for r in recs if r["op"] == "linear"]
    ew = [r for r in recs if r["op"] != "linear"]
    out = "\nLinear forward + backward (6·N·in·out flops)\n\n" + md_table(
        ["N×in→out", "variant", "median", "spread", "GFLOP/s", "% GEMM peak", "× vs torch"],
        [(r["case"], r["variant"], fmt_time(r["median_s"]), spread(r), fmt(r["gflops"]),
          fmt(r["pct_gemm_peak"], ".1f"), fmt(r.get("x_vs_torch"), ".2f")) for r in lin])
    if ew:
        out += "\n\nElementwise forward + backward (bytes: 5 float32 per element)\n\n" + md_table(
            ["op", "n", "variant", "median", "spread", "G elem/s", "GB/s", "% copy BW", "× vs torch"],
            [(r["op"], r["n"], r["variant"], fmt_time(r["median_s"]), spread(r), fmt(r["gelems"]),
              fmt(r["gbs"]), fmt(r["pct_copy_bw"], ".1f"), fmt(r.get("x_vs_torch"), ".2f")) for r in ew])
    return out


def layers_table(recs):
    """Each layer forward + backward (the Adam row: one step), against the fastest torch variant of its row."""
    rows = []
    for r in recs:
        if "skipped" in r:
            rows.append((r["case"], r["variant"], "-", "-", "-", r["skipped"], r["reference"]))
        else:
            rows.append((r["case"], r["variant"], r["layout"], fmt_time(r["median_s"]), spread(r),
                         fmt(r.get("x_vs_torch"), ".2f"), r["reference"]))
    return ("\nLayers forward + backward at the study's shapes (Adam: one step); cl: channels-last; "
            "× vs best torch: against the row's fastest torch variant, named\n\n"
            + md_table(["layer", "variant", "layout", "median", "spread", "× vs best torch", "best torch"], rows))


def training_table(recs):
    """Training steps (conv, train and mlp sections)."""
    head = "Training step (forward, MSE loss, backward, SGD momentum step)"
    if any(r["section"] == "conv" for r in recs):
        head = ("Training step of the study's models (forward, cross-entropy losses, backward, Adam step); "
                "torch: the study's channels-last torch.nn twin with autograd")
    if any(r["variant"] == "cpp fwd+bwd" for r in recs):
        head += "; cpp fwd+bwd: the cpp step without its SGD update"
    if any(r["variant"] == "matmuls alone" for r in recs):
        head += "; matmuls alone: only the step's matrix products, through torch.mm and addmm_"
    return f"\n{head}\n\n" + md_table(
        ["net", "batch", "variant", "median", "spread", "steps/s", "GFLOP/s", "% GEMM peak", "× vs torch"],
        [(r["net"], r["batch"], r["variant"], fmt_time(r["median_s"]), spread(r), f"{1 / r['median_s']:.0f}",
          fmt(r["gflops"]), fmt(r["pct_gemm_peak"], ".1f"), fmt(r.get("x_vs_torch"), ".2f")) for r in recs])


def tables(section, recs, threads, device):
    """Markdown for one section's records at one thread count."""
    title = f"\n### {section} ({device}, {threads} thread{'s' if threads > 1 else ''})\n"
    if section == "ceilings":
        return title + ceilings_table(recs)
    if section == "calls":
        return title + calls_table(recs)
    if section == "ops":
        return title + ops_tables(recs)
    if section == "layers":
        return title + layers_table(recs)
    return title + training_table(recs)
