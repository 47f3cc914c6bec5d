//! A step split across agents so that the parts add up to the whole exactly: each agent gets
//! the whole divided evenly, and the first ones one more each for the remainder.

/// `total` split into `parts` shares, the larger ones first.
pub fn shares(total: u32, parts: usize) -> Vec<u32> {
    let parts = parts.max(1) as u32;
    let (each, remainder) = (total / parts, total % parts);
    (0..parts)
        .map(|i| each + u32::from(i < remainder))
        .collect()
}

/// `items` dealt out in `shares`, in order.
pub fn deal<T>(items: Vec<T>, shares: &[u32]) -> Vec<Vec<T>> {
    let mut items = items.into_iter();
    shares
        .iter()
        .map(|share| items.by_ref().take(*share as usize).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_exactly_and_differ_by_one_at_most() {
        for total in [0u32, 1, 2, 7, 50, 101, 9_999] {
            for parts in 1..=7 {
                let shares = shares(total, parts);
                assert_eq!(shares.len(), parts);
                assert_eq!(shares.iter().sum::<u32>(), total);
                let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(max - min <= 1);
            }
        }
        assert_eq!(shares(10, 3), [4, 3, 3]);
        assert_eq!(
            deal((1..=10).collect(), &[4, 3, 3]),
            [vec![1, 2, 3, 4], vec![5, 6, 7], vec![8, 9, 10]]
        );
    }
}
