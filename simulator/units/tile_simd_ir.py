"""LLVM IR text of the SIMD tile loop (compiled by tile_simd.py).

``tiles(items, i0, i1, x, xrow, w, wstride, steps, min, max, mask, r, n, fs, fv, plo, phi,
sums, ostride)`` steps items i0..i1-1. Item i = (q, b): queries q .. q + QUERIES - 1 and the
LANES neurons of lane block b, over every adder-tree step.

With ``gather`` (event-driven schedules, one query per item), the step count is per query
(``steps[q]``, int64 array), and each pair's weights are two rows of w (block b, rows
``idx[q, 2 (s * pairs + m)]`` and the next one, LANES int16 each; idx int32 with row length
``irow``), interleaved into the layout below.

Operands, per step s and int16 pair m (``pairs`` per step):

* x: int32 (queries, xrow), element [q, s * pairs + m] = two int16 inputs (low, high);
* w: int16, block b at w + b * wstride, element [(s * pairs + m) * 2 * LANES + 2 l + h] =
  the weight of lane l for input h of the pair.

The pair's two products are summed in int32 (sext, mul, add of even and odd lanes: LLVM
emits ``vpmaddwd`` on x86). Per lane:

* saturate: e = r + tree output, r = clamp(e, min, max); an event iff r != e;
* wrap: the loop carries D = P - min, P the exact partial sum (so the register's chain is
  one addition); the register is (D mod 2**bits) + min, and an addition is an event iff it
  moves D into another window of 2**bits, i.e. changes D & ~mask (whatever the step's size:
  r + t leaves [min, max] exactly then); e = P at the first event (no earlier wrap).

Events are counted as steps + sum of the (-1 / 0) equality masks. Phase 1 also finds each
lane's first event (step and e). It runs in blocks of BLOCK steps: each block first without
first events; when a lane without one had an event in it, the block is run again from its
start with the first events selected in registers (each lane has one first event, so few
blocks run twice; ~13 % faster than selecting on every step when first events come late).
Once every lane of the item has had one, phase 2 runs the remaining steps without. Those
re-runs cost ~25 % of a 22-bit wrapping layer (up to one per lane, most items' first events
in different blocks), so a variant without first events (``first`` False) serves callers
that need them for a single query only (they step that query again with them).
``track`` keeps the min / max of P (from 0). Outputs: int32 arrays [query, b * LANES + l],
row stride ``ostride``; fs = -1 (and fv = 0) without an event; ``sums``: the final P (wrap,
tracked, or the ``sums`` variant of a saturating loop). ``freeze``: the tree output is
frozen before it joins the register, so that the register's loop-carried chain holds one
addition (LLVM reassociates r + (a + b) to (r + a) + b otherwise; ~3-5 %).
"""

from __future__ import annotations

LANES = 16  # neurons per item: two AVX2 registers of int32 (two independent chains)
BLOCK = 16  # phase 1's steps per block (see the module docstring)
QUERIES = 1  # queries per item (2 or 4 share each weight load, but spilled: slower here)


def tiles_ir(pairs: int, wrap: bool, track: bool, lanes: int = LANES,
             queries: int = QUERIES, freeze: bool = True, gather: bool = False,
             block: int = BLOCK, sums: bool = False, first: bool = True) -> str:
    """The module text: ``tiles`` and the declarations it uses. ``gather``: the
    event-driven variant (one query per item, see the module docstring); ``sums``: a
    saturating loop also carries P for the exact sums, without its min / max; ``first``
    False: no first events (every lane starts as if it had one, so no block runs twice;
    fs / fv are not stored)."""
    if gather and queries != 1:
        raise ValueError(f"the gathering loop takes one query per item, not {queries}")
    v = f"<{lanes} x i32>"
    h = f"<{2 * lanes} x i16>"
    h32 = f"<{2 * lanes} x i32>"
    b1 = f"<{lanes} x i1>"
    even = ", ".join(f"i32 {2 * i}" for i in range(lanes))
    odd = ", ".join(f"i32 {2 * i + 1}" for i in range(lanes))
    ones = ", ".join("i1 true" for _ in range(lanes))
    minus1 = ", ".join("i32 -1" for _ in range(lanes))
    hr = f"<{lanes} x i16>"
    zip_ab = ", ".join(f"i32 {i // 2 + (lanes if i % 2 else 0)}" for i in range(2 * lanes))
    z = "zeroinitializer"
    us = range(queries)
    smin, smax = f"@llvm.smin.v{lanes}i32", f"@llvm.smax.v{lanes}i32"

    def splat(name: str, scalar: str) -> str:
        return (f"  %{name}.s = insertelement {v} poison, i32 {scalar}, i64 0\n"
                f"  %{name} = shufflevector {v} %{name}.s, {v} poison, {v} {z}\n")

    def step(p: str) -> str:
        """Phase ``p``'s step s{p}: e, new register c, counter, partial sums, per query."""
        out = [f"  %sb{p} = mul i64 %s{p}, {pairs}"]
        tree = {u: "" for u in us}
        for m in range(pairs):
            t = f"{p}_{m}"
            if gather:  # the pair's two weight rows, by input index, interleaved
                out.append(f"  %xi{t} = add i64 %sb{p}, {m}\n"
                           f"  %ii{t} = mul i64 %xi{t}, 2\n"
                           f"  %iaa{t} = getelementptr i32, ptr %iq, i64 %ii{t}\n"
                           f"  %ia{t} = load i32, ptr %iaa{t}, align 4\n"
                           f"  %iba{t} = getelementptr i32, ptr %iaa{t}, i64 1\n"
                           f"  %ib{t} = load i32, ptr %iba{t}, align 4\n"
                           f"  %ia6{t} = sext i32 %ia{t} to i64\n"
                           f"  %ib6{t} = sext i32 %ib{t} to i64\n"
                           f"  %oa{t} = mul i64 %ia6{t}, {lanes}\n"
                           f"  %ob{t} = mul i64 %ib6{t}, {lanes}\n"
                           f"  %raa{t} = getelementptr i16, ptr %wblk, i64 %oa{t}\n"
                           f"  %rba{t} = getelementptr i16, ptr %wblk, i64 %ob{t}\n"
                           f"  %ra{t} = load {hr}, ptr %raa{t}, align 2\n"
                           f"  %rb{t} = load {hr}, ptr %rba{t}, align 2\n"
                           f"  %wv{t} = shufflevector {hr} %ra{t}, {hr} %rb{t}, "
                           f"<{2 * lanes} x i32> <{zip_ab}>\n"
                           f"  %we{t} = sext {h} %wv{t} to {h32}")
            else:
                out.append(f"  %xi{t} = add i64 %sb{p}, {m}\n"
                           f"  %wo{t} = mul i64 %xi{t}, {2 * lanes}\n"
                           f"  %wa{t} = getelementptr i16, ptr %wblk, i64 %wo{t}\n"
                           f"  %wv{t} = load {h}, ptr %wa{t}, align 2\n"
                           f"  %we{t} = sext {h} %wv{t} to {h32}")
            for u in us:
                tu = f"{t}_{u}"
                out.append(f"  %xa{tu} = getelementptr i32, ptr %xq{u}, i64 %xi{t}\n"
                           f"  %x{tu} = load i32, ptr %xa{tu}, align 4\n"
                           + splat(f"xv{tu}", f"%x{tu}") +
                           f"  %xh{tu} = bitcast {v} %xv{tu} to {h}\n"
                           f"  %xe{tu} = sext {h} %xh{tu} to {h32}\n"
                           f"  %pr{tu} = mul {h32} %xe{tu}, %we{t}\n"
                           f"  %pe{tu} = shufflevector {h32} %pr{tu}, {h32} poison, {v} <{even}>\n"
                           f"  %po{tu} = shufflevector {h32} %pr{tu}, {h32} poison, {v} <{odd}>\n"
                           f"  %md{tu} = add {v} %pe{tu}, %po{tu}")
                if tree[u]:
                    out.append(f"  %sm{tu} = add {v} {tree[u]}, %md{tu}")
                    tree[u] = f"%sm{tu}"
                else:
                    tree[u] = f"%md{tu}"
        for u in us:
            pu = f"{p}_{u}"
            if freeze:
                out.append(f"  %t{pu} = freeze {v} {tree[u]}\n  %e{pu} = add {v} %r{pu}, %t{pu}")
            else:
                out.append(f"  %e{pu} = add {v} %r{pu}, {tree[u]}")
            if wrap:  # %e is the new D = P - min; its window D & ~mask changes at an event
                out.append(f"  %hw{pu} = and {v} %e{pu}, %nmkv\n"
                           f"  %eq{pu} = icmp eq {v} %hw{pu}, %w{pu}")
            else:
                out.append(f"  %l{pu} = call {v} {smax}({v} %e{pu}, {v} %mnv)\n"
                           f"  %c{pu} = call {v} {smin}({v} %l{pu}, {v} %mxv)\n"
                           f"  %eq{pu} = icmp eq {v} %c{pu}, %e{pu}")
            out.append(f"  %eqs{pu} = sext {b1} %eq{pu} to {v}\n"
                       f"  %n{pu}n = add {v} %n{pu}, %eqs{pu}")
            if track and wrap:  # D's min / max are P's, offset by -min
                out.append(f"  %pl{pu}n = call {v} {smin}({v} %pl{pu}, {v} %e{pu})\n"
                           f"  %ph{pu}n = call {v} {smax}({v} %ph{pu}, {v} %e{pu})")
            elif track:
                out.append(f"  %P{pu}n = add {v} %P{pu}, {tree[u]}\n"
                           f"  %pl{pu}n = call {v} {smin}({v} %pl{pu}, {v} %P{pu}n)\n"
                           f"  %ph{pu}n = call {v} {smax}({v} %ph{pu}, {v} %P{pu}n)")
            elif sums and not wrap:
                out.append(f"  %P{pu}n = add {v} %P{pu}, {tree[u]}")
        return "\n".join(out)

    sat_sums = sums and not wrap and not track  # P alone
    names = (["r", "w"] if wrap else ["r"]) + ["n", "fs", "fv"] + (
        (["pl", "ph"] if wrap else ["P", "pl", "ph"]) if track else ["P"] if sat_sums else [])
    carried = [nm for nm in names if nm not in ("fs", "fv")]  # what every step updates

    def cur(p: str, nm: str) -> str:
        return f"%{nm}{p}_{{u}}"

    def nxt(p: str, nm: str) -> str:
        """The value a step of phase ``p`` leaves for ``nm`` (``{u}``: the query)."""
        if nm == "r":
            return f"%{'e' if wrap else 'c'}{p}_{{u}}"
        return f"%hw{p}_{{u}}" if nm == "w" else f"%{nm}{p}_{{u}}n"

    def phis(p: str, which: list[str], sources: list[tuple[str, dict[str, str]]]) -> str:
        """Per query, the phis of state ``which`` in a block of phase ``p``: one incoming
        value per (predecessor block, name -> value template)."""
        return "\n".join(
            f"  %{nm}{p}_{u} = phi {v} " + ", ".join(
                f"[ {vals[nm].format(u=u)}, %{label} ]" for label, vals in sources)
            for u in us for nm in which)

    if wrap:  # the register is carried as D = P - min (P: the exact partial sum)
        init = {"r": "%d0v", "w": z, "n": z, "fs": "%big", "fv": z, "pl": "%d0v",
                "ph": "%d0v"}
    else:
        init = {"r": z, "n": z, "fs": "%big", "fv": z, "P": z, "pl": z, "ph": z}
    if not first:
        init["fs"] = z
    head = {nm: cur("h", nm) for nm in names}
    fast_end = {**{nm: nxt("f", nm) for nm in carried}, "fs": cur("h", "fs"),
                "fv": cur("h", "fv")}
    slow_end = {nm: nxt("1", nm) for nm in names}
    hits = []  # lanes whose first event fell into the block just run fast
    for u in us:
        hits.append(f"  %nq{u} = sub {v} %nh_{u}, %blv\n"  # no event: -1 per step
                    f"  %chg{u} = icmp ne {v} %nf_{u}n, %nq{u}\n"
                    f"  %nof{u} = icmp eq {v} %fsh_{u}, %big\n"
                    f"  %hit{u} = and {b1} %chg{u}, %nof{u}")
    hit = "%hit0"
    for u in list(us)[1:]:
        hits.append(f"  %hor{u} = or {b1} {hit}, %hit{u}")
        hit = f"%hor{u}"

    first_events = []
    for u in us:
        pu = f"1_{u}"
        first_events.append(
            f"  %ne{pu} = xor {b1} %eq{pu}, <{ones}>\n"
            f"  %nof{pu} = icmp eq {v} %fs{pu}, %big\n"
            f"  %new{pu} = and {b1} %ne{pu}, %nof{pu}\n"
            f"  %fs{pu}n = select {b1} %new{pu}, {v} %s1v, {v} %fs{pu}\n"
            f"  %fv{pu}n = select {b1} %new{pu}, {v} %e{pu}, {v} %fv{pu}\n"
            f"  %had{pu} = icmp ne {v} %fs{pu}n, %big")
    had = "%had1_0"
    for u in list(us)[1:]:
        first_events.append(f"  %hand{u} = and {b1} {had}, %had1_{u}")
        had = f"%hand{u}"
    xq = "\n".join(f"  %qu{u} = add i64 %q, {u}\n  %xo{u} = mul i64 %qu{u}, %xrow\n"
                   f"  %xq{u} = getelementptr i32, ptr %xp, i64 %xo{u}" for u in us)
    final = []
    for u in us:  # from the block header of phase 1, or from phase 2
        final.append(
            f"  %rf{u} = phi {v} [ %rh_{u}, %p1 ], [ %r2_{u}, %p2 ]\n"
            f"  %nf{u} = phi {v} [ %nh_{u}, %p1 ], [ %n2_{u}, %p2 ]\n"
            f"  %fsf{u} = phi {v} [ %fsh_{u}, %p1 ], [ %fs1_{u}n, %p2 ]\n"
            f"  %fvf{u} = phi {v} [ %fvh_{u}, %p1 ], [ %fv1_{u}n, %p2 ]")
        if track:
            final.append(f"  %plf{u} = phi {v} [ %plh_{u}, %p1 ], [ %pl2_{u}, %p2 ]\n"
                         f"  %phf{u} = phi {v} [ %phh_{u}, %p1 ], [ %ph2_{u}, %p2 ]")
        if (track or sat_sums) and not wrap:
            final.append(f"  %Pf{u} = phi {v} [ %Ph_{u}, %p1 ], [ %P2_{u}, %p2 ]")
    stores = []
    for u in us:
        outs = [("ro", f"%ro{u}"), ("no", f"%ev{u}")]
        if first:
            outs += [("fso", f"%fso{u}"), ("fvo", f"%fvo{u}")]
        if track:
            outs += [("plo", f"%plo{u}"), ("pho", f"%pho{u}")]
        if wrap or track or sat_sums:
            outs += [("so", f"%so{u}")]
        stores.append(f"  %ev{u} = add {v} %stv, %nf{u}\n"
                      f"  %none{u} = icmp eq {v} %fsf{u}, %big\n"
                      f"  %fso{u} = select {b1} %none{u}, {v} <{minus1}>, {v} %fsf{u}\n"
                      f"  %or{u} = mul i64 %qu{u}, %ostride\n"
                      f"  %o{u} = add i64 %or{u}, %bl")
        if wrap:  # from D = P - min: the register (D mod 2**bits) + min, P, e and P's range
            stores.append(f"  %rm{u} = and {v} %rf{u}, %mkv\n"
                          f"  %ro{u} = add {v} %rm{u}, %mnv\n"
                          f"  %so{u} = add {v} %rf{u}, %mnv\n"
                          f"  %fvm{u} = add {v} %fvf{u}, %mnv\n"
                          f"  %fvo{u} = select {b1} %none{u}, {v} {z}, {v} %fvm{u}")
            if track:
                stores.append(f"  %plo{u} = add {v} %plf{u}, %mnv\n"
                              f"  %pho{u} = add {v} %phf{u}, %mnv")
        else:
            stores.append(f"  %ro{u} = or {v} %rf{u}, {z}\n"
                          f"  %fvo{u} = or {v} %fvf{u}, {z}")
            if track:
                stores.append(f"  %plo{u} = or {v} %plf{u}, {z}\n"
                              f"  %pho{u} = or {v} %phf{u}, {z}")
            if track or sat_sums:
                stores.append(f"  %so{u} = or {v} %Pf{u}, {z}")
        for arr, val in outs:
            stores.append(f"  %{arr}a{u} = getelementptr i32, ptr %{arr}, i64 %o{u}\n"
                          f"  store {v} {val}, ptr %{arr}a{u}, align 4")
    if gather:
        gather_args = ", ptr noalias %ip, i64 %irow, ptr noalias %sp"
        gather_item = ("  %spa = getelementptr i64, ptr %sp, i64 %q\n"
                       "  %stq = load i64, ptr %spa, align 8\n"
                       "  %io = mul i64 %q, %irow\n"
                       "  %iq = getelementptr i32, ptr %ip, i64 %io\n"
                       "  %stq32 = trunc i64 %stq to i32\n" + splat("stqv", "%stq32"))
        nsteps = "%stq"
        stores = [line.replace("%stv,", "%stqv,") for line in stores]
    else:
        gather_args = gather_item = ""
        nsteps = "%steps"
    return f"""
declare {v} {smax}({v}, {v})
declare {v} {smin}({v}, {v})
declare i64 @llvm.smin.i64(i64, i64)

define void @tiles(ptr noalias %items, i64 %i0, i64 %i1, ptr noalias %xp, i64 %xrow,
                   ptr noalias %wp, i64 %wstride, i64 %steps, i32 %mn, i32 %mx, i32 %mask,
                   ptr noalias %ro, ptr noalias %no, ptr noalias %fso, ptr noalias %fvo,
                   ptr noalias %plo, ptr noalias %pho, ptr noalias %so, i64 %ostride\
{gather_args}) {{
entry:
  %nmask = xor i32 %mask, -1
  %d0 = sub i32 0, %mn
{splat("mnv", "%mn")}{splat("mxv", "%mx")}{splat("mkv", "%mask")}{splat("big", "2147483647")}\
{splat("nmkv", "%nmask")}{splat("d0v", "%d0")}\
  %st32 = trunc i64 %steps to i32
{splat("stv", "%st32")}  %any = icmp slt i64 %i0, %i1
  br i1 %any, label %item, label %done

item:
  %i = phi i64 [ %i0, %entry ], [ %inext, %store ]
  %i2 = mul i64 %i, 2
  %qa = getelementptr i64, ptr %items, i64 %i2
  %q = load i64, ptr %qa, align 8
  %i2b = add i64 %i2, 1
  %ba = getelementptr i64, ptr %items, i64 %i2b
  %b = load i64, ptr %ba, align 8
  %bl = mul i64 %b, {lanes}
{xq}
  %woff = mul i64 %b, %wstride
  %wblk = getelementptr i16, ptr %wp, i64 %woff
{gather_item}  br label %p1

p1:
  %sh = phi i64 [ 0, %item ], [ %bend, %fchk ], [ %bend, %sdone ]
{phis("h", names, [("item", init), ("fchk", fast_end), ("sdone", slow_end)])}
  %more1 = icmp slt i64 %sh, {nsteps}
  br i1 %more1, label %fpre, label %store

fpre:
  %bend0 = add i64 %sh, {block}
  %bend = call i64 @llvm.smin.i64(i64 %bend0, i64 {nsteps})
  br label %floop

floop:
  %sf = phi i64 [ %sh, %fpre ], [ %sfn, %floop ]
{phis("f", carried, [("fpre", head), ("floop", {nm: nxt("f", nm) for nm in carried})])}
{step("f")}
  %sfn = add i64 %sf, 1
  %fmore = icmp slt i64 %sfn, %bend
  br i1 %fmore, label %floop, label %fchk

fchk:
  %blen = sub i64 %bend, %sh
  %bl32 = trunc i64 %blen to i32
{splat("blv", "%bl32")}{chr(10).join(hits)}
  %hitb = bitcast {b1} {hit} to i{lanes}
  %anyhit = icmp ne i{lanes} %hitb, 0
  br i1 %anyhit, label %sloop, label %p1

sloop:
  %s1 = phi i64 [ %sh, %fchk ], [ %s1n, %sloop ]
{phis("1", names, [("fchk", head), ("sloop", slow_end)])}
{step("1")}
  %s1t = trunc i64 %s1 to i32
{splat("s1v", "%s1t")}{chr(10).join(first_events)}
  %s1n = add i64 %s1, 1
  %smore = icmp slt i64 %s1n, %bend
  br i1 %smore, label %sloop, label %sdone

sdone:
  %hadb = bitcast {b1} {had} to i{lanes}
  %all = icmp eq i{lanes} %hadb, -1
  br i1 %all, label %p2, label %p1

p2:
  %s2 = phi i64 [ %bend, %sdone ], [ %s2n, %p2body ]
{phis("2", carried, [("sdone", slow_end), ("p2body", {nm: nxt("2", nm) for nm in carried})])}
  %more2 = icmp slt i64 %s2, {nsteps}
  br i1 %more2, label %p2body, label %store

p2body:
{step("2")}
  %s2n = add i64 %s2, 1
  br label %p2

store:
{chr(10).join(final)}
{chr(10).join(stores)}
  %inext = add i64 %i, 1
  %imore = icmp slt i64 %inext, %i1
  br i1 %imore, label %item, label %done

done:
  ret void
}}
"""
