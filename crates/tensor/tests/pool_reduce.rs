//! Pooling, reductions and argmax against direct loops.

mod common;

use common::*;
use cryptflow_tensor::kernels::{argmax, max_pool, pool_divisors, pool_windows, reduce_sum, sum_pool};
use cryptflow_tensor::{Layout, PoolGeometry, Tensor};
use rand::rngs::StdRng;
use rand::Rng;

fn act_offset(layout: Layout, channels: usize, spatial_shape: &[usize], b: usize, c: usize, pos: &[usize]) -> usize {
    let mut sp = 0;
    for (d, &p) in spatial_shape.iter().zip(pos) {
        sp = sp * d + p;
    }
    let ssz: usize = spatial_shape.iter().product();
    match layout {
        Layout::ChannelsFirst => (b * channels + c) * ssz + sp,
        Layout::ChannelsLast => (b * ssz + sp) * channels + c,
    }
}

/// (b, c, spatial) of every output element, in the row-major order of the output shape.
fn outputs_in_order(g: &PoolGeometry) -> Vec<(usize, usize, Vec<usize>)> {
    let out_sp = g.output();
    let mut v = vec![];
    for b in 0..g.batch {
        match g.layout {
            Layout::ChannelsFirst => {
                for c in 0..g.channels {
                    for o in indices(&out_sp) {
                        v.push((b, c, o));
                    }
                }
            }
            Layout::ChannelsLast => {
                for o in indices(&out_sp) {
                    for c in 0..g.channels {
                        v.push((b, c, o.clone()));
                    }
                }
            }
        }
    }
    v
}

/// Input positions of every window tap of output `o`, None where padding.
fn window(g: &PoolGeometry, o: &[usize]) -> Vec<Option<Vec<usize>>> {
    indices(&g.window)
        .into_iter()
        .map(|k| {
            let pos: Vec<isize> = (0..o.len()).map(|d| (o[d] * g.strides[d] + k[d]) as isize - g.pads_begin[d] as isize).collect();
            if pos.iter().zip(&g.input).all(|(&i, &n)| i >= 0 && (i as usize) < n) {
                Some(pos.iter().map(|&i| i as usize).collect())
            } else {
                None
            }
        })
        .collect()
}

fn random_pool(rng: &mut StdRng) -> PoolGeometry {
    let r = rng.random_range(1..=3);
    let window: Vec<usize> = (0..r).map(|_| rng.random_range(1..=3)).collect();
    let max_in = if r == 3 { 5 } else { 8 };
    let input: Vec<usize> = (0..r).map(|i| rng.random_range(window[i]..=max_in.max(window[i]))).collect();
    PoolGeometry {
        layout: if rng.random_bool(0.5) { Layout::ChannelsFirst } else { Layout::ChannelsLast },
        batch: rng.random_range(1..=2),
        channels: rng.random_range(1..=4),
        // Pads smaller than the window, so every window holds an in-bounds element.
        pads_begin: (0..r).map(|i| rng.random_range(0..window[i])).collect(),
        pads_end: (0..r).map(|i| rng.random_range(0..window[i])).collect(),
        strides: (0..r).map(|_| rng.random_range(1..=3)).collect(),
        count_include_pad: rng.random_bool(0.5),
        input,
        window,
    }
}

fn check_pools<T: TestElement>(seed: u64) {
    let mut rng = rng(seed);
    for case in 0..300 {
        let g = random_pool(&mut rng);
        let x: Tensor<T> = random_tensor(&mut rng, &g.input_shape());
        let at = |b: usize, c: usize, pos: &[usize]| x.data()[act_offset(g.layout, g.channels, &g.input, b, c, pos)];
        let outs = outputs_in_order(&g);
        let wsize = g.window_size();
        let mut want_max = vec![];
        let mut want_sum = vec![];
        let mut want_div = vec![];
        let mut want_windows = vec![T::ZERO; wsize * outs.len()];
        for (n, (b, c, o)) in outs.iter().enumerate() {
            let taps = window(&g, o);
            let first = taps.iter().flatten().next().expect("window has an in-bounds tap").clone();
            let vals: Vec<T> = taps.iter().flatten().map(|p| at(*b, *c, p)).collect();
            let mut m = vals[0];
            for &v in &vals {
                if v.greater_than(m) {
                    m = v;
                }
            }
            want_max.push(m);
            want_sum.push(vals.iter().fold(T::ZERO, |a, &v| a.add(v)));
            want_div.push(if g.count_include_pad { wsize as u64 } else { vals.len() as u64 });
            for (k, tap) in taps.iter().enumerate() {
                want_windows[k * outs.len() + n] = at(*b, *c, tap.as_ref().unwrap_or(&first));
            }
        }
        let what = format!("case {case}: {g:?}");
        let shape = g.output_shape();
        assert_close(&max_pool(&x, &g).unwrap(), &Tensor::new(shape.clone(), want_max).unwrap(), 1, &what);
        assert_close(&sum_pool(&x, &g).unwrap(), &Tensor::new(shape.clone(), want_sum).unwrap(), wsize, &what);
        assert_eq!(pool_divisors(&g), Tensor::new(shape.clone(), want_div).unwrap(), "{what}");
        assert_close(&pool_windows(&x, &g).unwrap(), &Tensor::new(vec![wsize, outs.len()], want_windows).unwrap(), 1, &what);
    }
}

#[test]
fn pools_u64_random() {
    check_pools::<u64>(200);
}

#[test]
fn pools_f32_random() {
    check_pools::<f32>(201);
}

fn pool2d(input: [usize; 2], window: usize, stride: usize, pad: usize) -> PoolGeometry {
    PoolGeometry {
        layout: Layout::ChannelsFirst,
        batch: 1,
        channels: 1,
        input: input.to_vec(),
        window: vec![window, window],
        strides: vec![stride, stride],
        pads_begin: vec![pad, pad],
        pads_end: vec![pad, pad],
        count_include_pad: false,
    }
}

#[test]
fn hand_computed_pools() {
    // Ring elements in signed order: u64::MAX is -1 and loses to 0.
    let x = Tensor::new(vec![1, 1, 2, 2], vec![u64::MAX, 0, 5, u64::MAX - 10]).unwrap();
    let g = pool2d([2, 2], 2, 1, 0);
    assert_eq!(max_pool(&x, &g).unwrap().data(), &[5]);
    let neg = Tensor::new(vec![1, 1, 2, 2], vec![u64::MAX, u64::MAX - 3, u64::MAX - 1, u64::MAX - 10]).unwrap();
    assert_eq!(max_pool(&neg, &g).unwrap().data(), &[u64::MAX]);
    // Padding 1, window 2, stride 2 on a 3x3: four windows with 1, 2, 2 and 4 in-bounds taps.
    let x = Tensor::new(vec![1, 1, 3, 3], (1..=9u64).collect()).unwrap();
    let g = pool2d([3, 3], 2, 2, 1);
    assert_eq!(max_pool(&x, &g).unwrap().data(), &[1, 3, 7, 9]);
    assert_eq!(sum_pool(&x, &g).unwrap().data(), &[1, 2 + 3, 4 + 7, 5 + 6 + 8 + 9]);
    assert_eq!(pool_divisors(&g).data(), &[1, 2, 2, 4]);
    let mut gi = g.clone();
    gi.count_include_pad = true;
    assert_eq!(pool_divisors(&gi).data(), &[4, 4, 4, 4]);
    // Window rows (taps (0,0), (0,1), (1,0), (1,1)); padded taps repeat the first in-bounds
    // element of their window: windows {1}, {2,3}, {4,7}, {5,6,8,9}.
    let wins = pool_windows(&x, &g).unwrap();
    assert_eq!(wins.shape(), &[4, 4]);
    assert_eq!(wins.data(), &[1, 2, 4, 5, 1, 2, 4, 6, 1, 2, 4, 8, 1, 3, 7, 9]);
}

#[test]
fn pool_shape_errors() {
    let g = pool2d([3, 3], 2, 1, 0);
    assert!(max_pool(&Tensor::<u64>::zeros(vec![1, 1, 3, 4]), &g).is_err());
    assert!(sum_pool(&Tensor::<u64>::zeros(vec![1, 2, 3, 3]), &g).is_err());
    assert!(pool_windows(&Tensor::<u64>::zeros(vec![1, 3, 3]), &g).is_err());
    let mut bad = g.clone();
    bad.window = vec![4, 4];
    assert!(max_pool(&Tensor::<u64>::zeros(vec![1, 1, 3, 3]), &bad).is_err());
    assert!(sum_pool(&Tensor::<u64>::zeros(vec![1, 1, 3, 3]), &bad).is_err());
    assert_eq!(pool_divisors(&bad).shape(), &[0]);
    let mut bad = g.clone();
    bad.strides = vec![0, 1];
    assert!(sum_pool(&Tensor::<u64>::zeros(vec![1, 1, 3, 3]), &bad).is_err());
    let mut bad = g.clone();
    bad.pads_end = vec![0];
    assert!(sum_pool(&Tensor::<u64>::zeros(vec![1, 1, 3, 3]), &bad).is_err());
    // A window made only of padding: fine for a sum, not for a max.
    let mut pad_only = pool2d([1, 1], 2, 2, 2);
    pad_only.pads_end = vec![0, 0];
    let x = Tensor::<u64>::zeros(vec![1, 1, 1, 1]);
    assert!(sum_pool(&x, &pad_only).is_ok());
    assert!(max_pool(&x, &pad_only).is_err());
    assert!(pool_windows(&x, &pad_only).is_err());
}

#[test]
fn reduce_sum_matches_definition() {
    let mut rng = rng(300);
    for _ in 0..300 {
        let rank = rng.random_range(0..=4);
        let shape: Vec<usize> = (0..rank).map(|_| rng.random_range(1..=4)).collect();
        let axes: Vec<usize> = (0..rank).filter(|_| rng.random_bool(0.5)).collect();
        let keep = rng.random_bool(0.5);
        let x: Tensor<u64> = random_tensor(&mut rng, &shape);
        let y = reduce_sum(&x, &axes, keep).unwrap();
        let kept_shape: Vec<usize> = (0..rank).map(|a| if axes.contains(&a) { 1 } else { shape[a] }).collect();
        let mut want = Tensor::<u64>::zeros(kept_shape.clone());
        for idx in indices(&shape) {
            let o: Vec<usize> = (0..rank).map(|a| if axes.contains(&a) { 0 } else { idx[a] }).collect();
            let off = offset(&kept_shape, &o);
            want.data_mut()[off] = want.data()[off].wrapping_add(get(&x, &idx));
        }
        if !keep {
            let squeezed: Vec<usize> = (0..rank).filter(|a| !axes.contains(a)).map(|a| shape[a]).collect();
            want = want.reshape(squeezed).unwrap();
        }
        assert_eq!(y, want, "{shape:?} {axes:?} {keep}");
        // Floats too.
        let xf = x.map(|v| (v % 1000) as f32);
        let yf = reduce_sum(&xf, &axes, keep).unwrap();
        assert_eq!(yf.shape(), want.shape());
    }
    let x = Tensor::new(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    assert_eq!(reduce_sum(&x, &[1], false).unwrap().data(), &[6.0, 15.0]);
    assert_eq!(reduce_sum(&x, &[0], true).unwrap().shape(), &[1, 3]);
    assert_eq!(reduce_sum(&x, &[0, 1], false).unwrap().shape(), &[] as &[usize]);
    assert_eq!(reduce_sum(&x, &[0, 1], false).unwrap().data(), &[21.0]);
    assert!(reduce_sum(&x, &[1, 0], false).is_err());
    assert!(reduce_sum(&x, &[1, 1], false).is_err());
    assert!(reduce_sum(&x, &[2], false).is_err());
}

#[test]
fn argmax_matches_definition() {
    let mut rng = rng(301);
    for _ in 0..300 {
        let rank = rng.random_range(1..=4);
        let shape: Vec<usize> = (0..rank).map(|_| rng.random_range(1..=4)).collect();
        let axis = rng.random_range(0..rank);
        let keep = rng.random_bool(0.5);
        // Few distinct values (incl. "negative" ring elements) so ties happen.
        let x = Tensor::new(
            shape.clone(),
            (0..shape.iter().product::<usize>()).map(|_| (rng.random_range(0..5u64)).wrapping_sub(2)).collect(),
        )
        .unwrap();
        let y = argmax(&x, axis, keep).unwrap();
        let mut out_shape = shape.clone();
        out_shape[axis] = 1;
        let mut want = vec![];
        for idx in indices(&out_shape) {
            let mut best = 0;
            for e in 0..shape[axis] {
                let mut i = idx.clone();
                i[axis] = e;
                let mut bi = idx.clone();
                bi[axis] = best;
                if (get(&x, &i) as i64) > (get(&x, &bi) as i64) {
                    best = e;
                }
            }
            want.push(best as u64);
        }
        if !keep {
            out_shape.remove(axis);
        }
        assert_eq!(y, Tensor::new(out_shape, want).unwrap());
    }
    let x = Tensor::new(vec![2, 3], vec![1.0f32, 7.0, 7.0, -1.0, -3.0, -2.0]).unwrap();
    assert_eq!(argmax(&x, 1, false).unwrap().data(), &[1.0, 0.0]);
    assert_eq!(argmax(&x, 0, true).unwrap().data(), &[0.0, 0.0, 0.0]);
    assert_eq!(argmax(&x, 0, true).unwrap().shape(), &[1, 3]);
    assert!(argmax(&x, 2, false).is_err());
    assert!(argmax(&Tensor::<f32>::zeros(vec![2, 0]), 1, false).is_err());
}
