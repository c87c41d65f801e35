"""CoinFactory, ArtistCoin, CoinStaking and CoinPool on the in-process EVM."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.logs import DISCARD

if TYPE_CHECKING:  # the fixtures' class; conftest modules are not imported at run time
    from conftest import EvmChain

EXAMPLES = int(os.environ.get("AUDIFI_CONTRACT_EXAMPLES", "20"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

PLATFORM, ARTIST = 0, 1
USERS = (2, 3, 4)
ETHER = 10**18
SUPPLY = 1_000_000 * ETHER
USER_COINS = 100_000 * ETHER
ZERO = "0x" + "00" * 20
DEAD = "0x000000000000000000000000000000000000dEaD"


def logs(contract: Any, event: str, receipt: Any) -> list[Any]:
    """The decoded `event` logs that `contract` itself emitted in `receipt`."""
    decoded = getattr(contract.events, event)().process_receipt(receipt, errors=DISCARD)
    return [log for log in decoded if log.address == contract.address]


def amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    with_fee = amount_in * 997
    return with_fee * reserve_out // (reserve_in * 1000 + with_fee)


@attrs.define
class ArtistCoins:
    coin: Any
    staking: Any
    pool: Any
    create_receipt: Any


@pytest.fixture(scope="module")
def coin_factory(evm_module_chain: EvmChain) -> Any:
    return evm_module_chain.deploy("CoinFactory", gas=8_000_000)


def create_coin(chain: EvmChain, factory: Any, artist: int = ARTIST) -> ArtistCoins:
    a = chain.accounts
    fn = factory.functions.createCoin(a[artist], "Nova Coin", "NOVA", SUPPLY)
    receipt = chain.send(fn, a[PLATFORM], gas=1_500_000)
    coin, staking, pool = factory.functions.coinOf(a[artist]).call()
    result = ArtistCoins(
        chain.at("ArtistCoin", coin),
        chain.at("CoinStaking", staking),
        chain.at("CoinPool", pool),
        receipt,
    )
    # hand coins to the users and let both contracts pull them
    for user in (artist, *USERS):
        if user != artist:
            chain.send(result.coin.functions.transfer(a[user], USER_COINS), a[artist], gas=100_000)
        for spender in (staking, pool):
            chain.send(result.coin.functions.approve(spender, 2**256 - 1), a[user], gas=100_000)
    return result


@pytest.fixture(scope="module")
def module_coins(evm_module_chain: EvmChain, coin_factory: Any) -> ArtistCoins:
    return create_coin(evm_module_chain, coin_factory)


@pytest.fixture
def coins(evm_chain: EvmChain, module_coins: ArtistCoins) -> ArtistCoins:
    return module_coins


def deadline(chain: EvmChain, seconds: int = 3_600) -> int:
    """`seconds` after the time the next block will have (it follows the wall clock)."""
    return chain.tester.get_block_by_number("pending")["timestamp"] + seconds


# --- CoinFactory / ArtistCoin ----------------------------------------------------------------


def test_create_coin(evm_chain: EvmChain, coin_factory: Any) -> None:
    a = evm_chain.accounts
    artist = a[USERS[2]]
    predicted = coin_factory.functions.predictCoin(artist).call()
    fn = coin_factory.functions.createCoin(artist, "Echo", "ECHO", 5 * ETHER)
    receipt = evm_chain.send(fn, a[PLATFORM], gas=1_500_000)
    print(f"\ncreateCoin gas used: {receipt.gasUsed}")
    assert receipt.gasUsed < 1_000_000
    coin, staking, pool = coin_factory.functions.coinOf(artist).call()
    assert [coin, staking, pool] == list(predicted)
    (created,) = logs(coin_factory, "CoinCreated", receipt)
    assert (created.args.artist, created.args.coin, created.args.staking, created.args.pool) == (
        artist,
        coin,
        staking,
        pool,
    )
    c = evm_chain.at("ArtistCoin", coin).functions
    assert (c.name().call(), c.symbol().call(), c.decimals().call()) == ("Echo", "ECHO", 18)
    assert c.totalSupply().call() == 5 * ETHER == c.balanceOf(artist).call()
    assert c.artist().call() == artist
    s = evm_chain.at("CoinStaking", staking).functions
    assert (s.stakingToken().call(), s.artist().call(), s.totalStaked().call()) == (coin, artist, 0)
    p = evm_chain.at("CoinPool", pool).functions
    assert (p.coin().call(), p.name().call(), p.symbol().call()) == (coin, "AudiFi LP", "AFLP")
    assert (p.decimals().call(), p.MINIMUM_LIQUIDITY().call()) == (18, 1000)
    assert p.getReserves().call() == [0, 0]
    assert coin_factory.functions.coinOf(a[USERS[1]]).call() == [ZERO] * 3


def test_one_coin_per_artist_and_only_owner(evm_chain: EvmChain, coin_factory: Any) -> None:
    a = evm_chain.accounts
    evm_chain.send(
        coin_factory.functions.createCoin(a[USERS[0]], "A", "A", ETHER), a[PLATFORM], gas=1_500_000
    )
    first = coin_factory.functions.coinOf(a[USERS[0]]).call()
    evm_chain.expect_revert(
        coin_factory.functions.createCoin(a[USERS[0]], "B", "B", ETHER),
        a[PLATFORM],
        "CoinExists(address)",
    )
    evm_chain.expect_revert(
        coin_factory.functions.createCoin(a[USERS[1]], "B", "B", ETHER),
        a[USERS[1]],
        "OwnableUnauthorizedAccount(address)",
    )
    evm_chain.expect_revert(
        coin_factory.functions.createCoin(a[USERS[1]], "B", "B", 0), a[PLATFORM], "ZeroSupply()"
    )
    assert coin_factory.functions.coinOf(a[USERS[0]]).call() == first
    assert coin_factory.functions.coinOf(a[USERS[1]]).call() == [ZERO] * 3


def test_clones_and_implementations_cannot_be_reinitialised(
    evm_chain: EvmChain, coin_factory: Any, coins: ArtistCoins
) -> None:
    a = evm_chain.accounts
    x = a[USERS[0]]
    f = coin_factory.functions
    for coin in (coins.coin, evm_chain.at("ArtistCoin", f.coinImplementation().call())):
        evm_chain.expect_revert(
            coin.functions.initialize("X", "X", x, 1), x, "AlreadyInitialized()"
        )
    for staking in (coins.staking, evm_chain.at("CoinStaking", f.stakingImplementation().call())):
        evm_chain.expect_revert(staking.functions.initialize(x, x), x, "AlreadyInitialized()")
    for pool in (coins.pool, evm_chain.at("CoinPool", f.poolImplementation().call())):
        evm_chain.expect_revert(pool.functions.initialize(x), x, "AlreadyInitialized()")
    assert coins.coin.functions.totalSupply().call() == SUPPLY
    assert coins.staking.functions.artist().call() == a[ARTIST]


# --- CoinStaking -----------------------------------------------------------------------------


def test_stake_unstake_events_and_bounds(evm_chain: EvmChain, coins: ArtistCoins) -> None:
    a = evm_chain.accounts
    s, c = coins.staking.functions, coins.coin.functions
    user = a[USERS[0]]
    receipt = evm_chain.send(s.stake(10 * ETHER), user, gas=300_000)
    (staked,) = logs(coins.staking, "Staked", receipt)
    assert (staked.args.user, staked.args.amount) == (user, 10 * ETHER)
    assert s.stakedOf(user).call() == 10 * ETHER == s.totalStaked().call()
    evm_chain.expect_revert(s.unstake(11 * ETHER), user, "InsufficientStake(uint256,uint256)")
    evm_chain.expect_revert(s.unstake(0), user, "ZeroAmount()")
    evm_chain.expect_revert(s.stake(0), user, "ZeroAmount()")
    receipt = evm_chain.send(s.unstake(4 * ETHER), user, gas=300_000)
    (unstaked,) = logs(coins.staking, "Unstaked", receipt)
    assert (unstaked.args.user, unstaked.args.amount) == (user, 4 * ETHER)
    assert c.balanceOf(user).call() == USER_COINS - 6 * ETHER
    evm_chain.send(s.exit(), user, gas=300_000)
    assert c.balanceOf(user).call() == USER_COINS
    assert s.totalStaked().call() == 0


def test_only_the_artist_funds_rewards(evm_chain: EvmChain, coins: ArtistCoins) -> None:
    a = evm_chain.accounts
    s, c = coins.staking.functions, coins.coin.functions
    evm_chain.expect_revert(s.notifyRewardAmount(ETHER, 100), a[USERS[0]], "OnlyArtist()")
    evm_chain.expect_revert(s.notifyRewardAmount(ETHER, 100), a[PLATFORM], "OnlyArtist()")
    evm_chain.expect_revert(s.notifyRewardAmount(ETHER, 0), a[ARTIST], "InvalidDuration()")
    evm_chain.expect_revert(s.notifyRewardAmount(50, 100), a[ARTIST], "RewardTooSmall()")
    before = c.balanceOf(a[ARTIST]).call()
    receipt = evm_chain.send(s.notifyRewardAmount(1_000 * ETHER, 1_000), a[ARTIST], gas=300_000)
    (added,) = logs(coins.staking, "RewardAdded", receipt)
    assert (added.args.reward, added.args.duration) == (1_000 * ETHER, 1_000)
    assert before - c.balanceOf(a[ARTIST]).call() == 1_000 * ETHER
    assert c.balanceOf(coins.staking.address).call() == 1_000 * ETHER
    assert s.rewardRate().call() == ETHER
    assert s.periodFinish().call() == evm_chain.now() + 1_000


def test_rewards_accrue_pro_rata(evm_chain: EvmChain, coins: ArtistCoins) -> None:
    a = evm_chain.accounts
    s, c = coins.staking.functions, coins.coin.functions
    u0, u1 = a[USERS[0]], a[USERS[1]]
    evm_chain.send(s.stake(30 * ETHER), u0, gas=300_000)
    evm_chain.send(s.stake(10 * ETHER), u1, gas=300_000)
    evm_chain.send(s.notifyRewardAmount(4_000 * ETHER, 4_000), a[ARTIST], gas=300_000)
    start = evm_chain.now()
    evm_chain.time_travel(5_000)  # past the end of the period
    assert s.earned(u0).call() == 3_000 * ETHER
    assert s.earned(u1).call() == 1_000 * ETHER
    receipt = evm_chain.send(s.claimRewards(), u0, gas=300_000)
    (paid,) = logs(coins.staking, "RewardPaid", receipt)
    assert (paid.args.user, paid.args.reward) == (u0, 3_000 * ETHER)
    assert s.earned(u0).call() == 0
    evm_chain.send(s.exit(), u1, gas=300_000)
    assert c.balanceOf(u1).call() == USER_COINS + 1_000 * ETHER
    assert s.periodFinish().call() == start + 4_000
    # only u0's stake is left in the contract
    assert c.balanceOf(coins.staking.address).call() == 30 * ETHER


def test_rewards_with_nobody_staked_roll_over(evm_chain: EvmChain, coins: ArtistCoins) -> None:
    a = evm_chain.accounts
    s, c = coins.staking.functions, coins.coin.functions
    user = a[USERS[0]]
    evm_chain.send(s.notifyRewardAmount(1_000 * ETHER, 1_000), a[ARTIST], gas=300_000)
    t0 = evm_chain.now()
    evm_chain.time_travel(500)
    evm_chain.send(s.stake(ETHER), user, gas=300_000)  # mined at t0 + 500
    assert evm_chain.now() == t0 + 500
    assert s.unallocatedRewards().call() == 500 * ETHER
    evm_chain.time_travel(1_000)
    assert s.earned(user).call() == 500 * ETHER
    evm_chain.send(s.exit(), user, gas=300_000)
    assert c.balanceOf(user).call() == USER_COINS + 500 * ETHER
    # the unallocated half funds the next period
    evm_chain.send(s.notifyRewardAmount(ETHER, 100), a[ARTIST], gas=300_000)
    assert s.rewardRate().call() == 501 * ETHER // 100
    assert s.unallocatedRewards().call() == 0
    assert c.balanceOf(coins.staking.address).call() == 501 * ETHER


def test_notify_during_a_period_adds_the_leftover(evm_chain: EvmChain, coins: ArtistCoins) -> None:
    a = evm_chain.accounts
    s = coins.staking.functions
    evm_chain.send(s.stake(ETHER), a[USERS[0]], gas=300_000)
    evm_chain.send(s.notifyRewardAmount(1_000 * ETHER, 1_000), a[ARTIST], gas=300_000)
    evm_chain.time_travel(400)
    evm_chain.send(s.notifyRewardAmount(400 * ETHER, 1_000), a[ARTIST], gas=300_000)  # at +400
    assert s.rewardRate().call() == (600 + 400) * ETHER // 1_000
    evm_chain.time_travel(2_000)
    assert s.earned(a[USERS[0]]).call() == 1_400 * ETHER


Stake = st.tuples(st.just("stake"), st.sampled_from(USERS), st.integers(1, 10**6))
Unstake = st.tuples(st.just("unstake"), st.sampled_from(USERS), st.integers(0, 100))
ClaimReward = st.tuples(st.just("claim"), st.sampled_from(USERS))
Exit = st.tuples(st.just("exit"), st.sampled_from(USERS))
Notify = st.tuples(st.just("notify"), st.integers(1, 10**6), st.integers(1, 5_000))
Wait = st.tuples(st.just("wait"), st.integers(1, 3_000))
STAKE_UNIT = 10**12  # amounts are drawn in these units, up to 1e18 wei


@PROPERTY
@given(
    ops=st.lists(
        st.one_of(Stake, Unstake, ClaimReward, Exit, Notify, Wait), min_size=3, max_size=14
    )
)
def test_staking_conserves_tokens(
    evm_chain: EvmChain, coins: ArtistCoins, ops: list[tuple[Any, ...]]
) -> None:
    """Tokens are only moved, never created or lost: the wallets plus the contract always hold the
    whole supply, the contract holds the stakes plus every reward owed or still to stream plus
    what is unallocated, up to rounding dust; once everyone exits only that remains."""
    a = evm_chain.accounts
    s, c = coins.staking.functions, coins.coin.functions
    holders = [a[ARTIST], *(a[u] for u in USERS)]
    with evm_chain.snapshot():
        stakes = dict.fromkeys(USERS, 0)
        funded = 0
        paid = 0
        for op in ops:
            kind = op[0]
            if kind == "stake":
                _, user, units = op
                evm_chain.send(s.stake(units * STAKE_UNIT), a[user], gas=300_000)
                stakes[user] += units * STAKE_UNIT
            elif kind == "unstake":
                _, user, percent = op
                amount = stakes[user] * percent // 100
                if amount == 0:
                    evm_chain.expect_revert(s.unstake(amount), a[user], "ZeroAmount()")
                    continue
                evm_chain.send(s.unstake(amount), a[user], gas=300_000)
                stakes[user] -= amount
            elif kind in ("claim", "exit"):
                _, user = op
                before = c.balanceOf(a[user]).call()
                reward = s.earned(a[user]).call()
                evm_chain.send(
                    getattr(s, "claimRewards" if kind == "claim" else "exit")(),
                    a[user],
                    gas=300_000,
                )
                unstaked = stakes[user] if kind == "exit" else 0
                stakes[user] -= unstaked
                # the block of the claim may add one more second of rewards
                gained = c.balanceOf(a[user]).call() - before - unstaked
                assert gained >= reward
                paid += gained
            elif kind == "notify":
                _, units, duration = op
                amount = units * STAKE_UNIT
                evm_chain.send(s.notifyRewardAmount(amount, duration), a[ARTIST], gas=300_000)
                funded += amount
            else:
                evm_chain.time_travel(op[1])

            held = c.balanceOf(coins.staking.address).call()
            assert sum(c.balanceOf(h).call() for h in holders) + held == SUPPLY
            assert s.totalStaked().call() == sum(stakes.values())
            assert all(s.stakedOf(a[u]).call() == stakes[u] for u in USERS)
            owed = sum(s.earned(a[u]).call() for u in USERS)
            committed = owed + s.pendingRewards().call() + s.unallocatedRewards().call()
            dust = held - s.totalStaked().call() - committed
            assert 0 <= dust <= 10**6
            assert held == sum(stakes.values()) + funded - paid

        # the period ends and everybody leaves: only unallocated rewards and dust remain
        evm_chain.time_travel(10_000)
        for u in USERS:
            if stakes[u] or s.earned(a[u]).call():
                evm_chain.send(s.exit(), a[u], gas=300_000)
        held = c.balanceOf(coins.staking.address).call()
        assert s.totalStaked().call() == 0
        assert 0 <= held - s.unallocatedRewards().call() <= 10**6
        assert sum(c.balanceOf(h).call() for h in holders) + held == SUPPLY


# --- CoinPool --------------------------------------------------------------------------------


def test_first_liquidity_locks_minimum(evm_chain: EvmChain, coins: ArtistCoins) -> None:
    a = evm_chain.accounts
    p, c = coins.pool.functions, coins.coin.functions
    artist = a[ARTIST]
    fn = p.addLiquidity(10_000 * ETHER, 0, 0, artist, deadline(evm_chain))
    receipt = evm_chain.send(fn, artist, gas=400_000, value=10 * ETHER)
    expected = math.isqrt(10_000 * ETHER * 10 * ETHER) - 1000
    (added,) = logs(coins.pool, "LiquidityAdded", receipt)
    assert (added.args.provider, added.args.coinAmount, added.args.ethAmount) == (
        artist,
        10_000 * ETHER,
        10 * ETHER,
    )
    assert added.args.liquidity == expected == p.balanceOf(artist).call()
    assert p.balanceOf(DEAD).call() == 1000
    assert p.totalSupply().call() == expected + 1000
    assert p.getReserves().call() == [10_000 * ETHER, 10 * ETHER]
    assert evm_chain.balance(coins.pool.address) == 10 * ETHER
    assert c.balanceOf(coins.pool.address).call() == 10_000 * ETHER
    # the whole position can be withdrawn except the locked minimum
    evm_chain.send(
        p.removeLiquidity(expected, 0, 0, artist, deadline(evm_chain)), artist, gas=400_000
    )
    assert p.totalSupply().call() == 1000
    rc, re = p.getReserves().call()
    assert 0 < rc and 0 < re and rc * re >= 1000 * 1000


def test_first_liquidity_too_small_reverts(evm_chain: EvmChain, coins: ArtistCoins) -> None:
    a = evm_chain.accounts
    fn = coins.pool.functions.addLiquidity(1000, 0, 0, a[ARTIST], deadline(evm_chain))
    evm_chain.expect_revert(fn, a[ARTIST], "InsufficientLiquidityMinted()", value=1000)
    assert coins.pool.functions.totalSupply().call() == 0


def seed_pool(
    chain: EvmChain, coins: ArtistCoins, coin: int = 10_000 * ETHER, eth: int = 10 * ETHER
) -> None:
    fn = coins.pool.functions.addLiquidity(coin, 0, 0, chain.accounts[ARTIST], deadline(chain))
    chain.send(fn, chain.accounts[ARTIST], gas=400_000, value=eth)


def test_swaps_follow_the_formula(evm_chain: EvmChain, coins: ArtistCoins) -> None:
    a = evm_chain.accounts
    p, c = coins.pool.functions, coins.coin.functions
    seed_pool(evm_chain, coins)
    user, to = a[USERS[0]], a[USERS[1]]
    rc, re = p.getReserves().call()
    expect = amount_out(ETHER, re, rc)
    assert p.getAmountOut(ETHER, re, rc).call() == expect
    before = c.balanceOf(to).call()
    fn = p.swapExactEthForCoin(expect, to, deadline(evm_chain))
    receipt = evm_chain.send(fn, user, gas=300_000, value=ETHER)
    (swap,) = logs(coins.pool, "Swap", receipt)
    assert (
        swap.args.sender,
        swap.args.ethIn,
        swap.args.amountIn,
        swap.args.amountOut,
        swap.args.to,
    ) == (
        user,
        True,
        ETHER,
        expect,
        to,
    )
    assert c.balanceOf(to).call() - before == expect
    assert p.getReserves().call() == [rc - expect, re + ETHER]

    rc, re = p.getReserves().call()
    expect = amount_out(500 * ETHER, rc, re)
    before = evm_chain.balance(to)
    fn = p.swapExactCoinForEth(500 * ETHER, expect, to, deadline(evm_chain))
    receipt = evm_chain.send(fn, user, gas=300_000)
    (swap,) = logs(coins.pool, "Swap", receipt)
    assert (swap.args.ethIn, swap.args.amountIn, swap.args.amountOut) == (
        False,
        500 * ETHER,
        expect,
    )
    assert evm_chain.balance(to) - before == expect
    assert p.getReserves().call() == [rc + 500 * ETHER, re - expect]
    assert evm_chain.balance(coins.pool.address) == re - expect


def test_slippage_and_deadline_guards(evm_chain: EvmChain, coins: ArtistCoins) -> None:
    a = evm_chain.accounts
    p = coins.pool.functions
    user = a[USERS[0]]
    evm_chain.expect_revert(
        p.swapExactEthForCoin(0, user, deadline(evm_chain)),
        user,
        "InsufficientLiquidity()",
        value=ETHER,
    )
    seed_pool(evm_chain, coins)
    rc, re = p.getReserves().call()
    out = amount_out(ETHER, re, rc)
    evm_chain.expect_revert(
        p.swapExactEthForCoin(out + 1, user, deadline(evm_chain)),
        user,
        "InsufficientOutput(uint256,uint256)",
        value=ETHER,
    )
    evm_chain.expect_revert(
        p.swapExactCoinForEth(ETHER, ETHER, user, deadline(evm_chain)),
        user,
        "InsufficientOutput(uint256,uint256)",
    )
    past = evm_chain.now() - 1
    evm_chain.expect_revert(
        p.swapExactEthForCoin(0, user, past), user, "Expired(uint256,uint256)", value=ETHER
    )
    evm_chain.expect_revert(
        p.addLiquidity(ETHER, 0, 0, user, past), user, "Expired(uint256,uint256)", value=ETHER
    )
    evm_chain.expect_revert(
        p.removeLiquidity(1, 0, 0, user, past), user, "Expired(uint256,uint256)"
    )
    # at the pool price 1 ETH needs 1000 coin: asking for at least 1001 coin used must fail
    evm_chain.expect_revert(
        p.addLiquidity(2_000 * ETHER, 1_001 * ETHER, 0, user, deadline(evm_chain)),
        user,
        "SlippageCoin(uint256,uint256)",
        value=ETHER,
    )
    evm_chain.expect_revert(
        p.addLiquidity(500 * ETHER, 0, ETHER, user, deadline(evm_chain)),
        user,
        "SlippageEth(uint256,uint256)",
        value=ETHER,
    )
    lp = p.balanceOf(a[ARTIST]).call()
    evm_chain.expect_revert(
        p.removeLiquidity(lp, 10_001 * ETHER, 0, a[ARTIST], deadline(evm_chain)),
        a[ARTIST],
        "SlippageCoin(uint256,uint256)",
    )
    assert p.getReserves().call() == [rc, re]


def test_add_liquidity_refunds_excess_eth(evm_chain: EvmChain, coins: ArtistCoins) -> None:
    a = evm_chain.accounts
    p, c = coins.pool.functions, coins.coin.functions
    seed_pool(evm_chain, coins)
    user = a[USERS[0]]
    supply = p.totalSupply().call()
    before_eth, before_coin = evm_chain.balance(user), c.balanceOf(user).call()
    fn = p.addLiquidity(500 * ETHER, 0, 0, user, deadline(evm_chain))
    receipt = evm_chain.send(fn, user, gas=400_000, value=2 * ETHER)
    fee = receipt.gasUsed * receipt.effectiveGasPrice
    assert before_eth - evm_chain.balance(user) - fee == ETHER // 2  # 1.5 ETH refunded
    assert before_coin - c.balanceOf(user).call() == 500 * ETHER
    assert p.balanceOf(user).call() == supply // 20
    assert p.getReserves().call() == [10_500 * ETHER, 10 * ETHER + ETHER // 2]
    # removing it again returns (up to rounding in the pool's favour) what was put in
    fn = p.removeLiquidity(supply // 20, 0, 0, user, deadline(evm_chain))
    receipt = evm_chain.send(fn, user, gas=400_000)
    (removed,) = logs(coins.pool, "LiquidityRemoved", receipt)
    assert removed.args.provider == user and removed.args.liquidity == supply // 20
    assert 500 * ETHER - 10**6 <= removed.args.coinAmount <= 500 * ETHER
    assert ETHER // 2 - 10**6 <= removed.args.ethAmount <= ETHER // 2
    assert p.balanceOf(user).call() == 0


def test_plain_eth_to_pool_is_rejected(evm_chain: EvmChain, coins: ArtistCoins) -> None:
    a = evm_chain.accounts
    tx = evm_chain.w3.eth.send_transaction(
        {"from": a[USERS[0]], "to": coins.pool.address, "value": ETHER, "gas": 100_000}
    )
    assert evm_chain.w3.eth.get_transaction_receipt(tx).status == 0
    assert evm_chain.balance(coins.pool.address) == 0


SwapEth = st.tuples(st.just("swap_eth"), st.sampled_from(USERS), st.integers(1, 10**6))
SwapCoin = st.tuples(st.just("swap_coin"), st.sampled_from(USERS), st.integers(1, 10**6))
Add = st.tuples(
    st.just("add"), st.sampled_from(USERS), st.integers(1, 10**6), st.integers(1, 10**6)
)
Remove = st.tuples(st.just("remove"), st.sampled_from((ARTIST, *USERS)), st.integers(1, 100))
POOL_UNIT = 10**13  # drawn amounts * unit: up to 10 ETH and 10 ETH worth of coin units


@PROPERTY
@given(
    seed=st.tuples(st.integers(10**3, 10**6), st.integers(10**3, 10**6)),
    ops=st.lists(st.one_of(SwapEth, SwapCoin, Add, Remove), min_size=3, max_size=14),
)
def test_pool_k_never_decreases(
    evm_chain: EvmChain, coins: ArtistCoins, seed: tuple[int, int], ops: list[tuple[Any, ...]]
) -> None:
    """Swaps never decrease k = reserveCoin * reserveEth; liquidity changes never decrease k per LP
    share (k / totalSupply**2); the books always match the pool's real balances."""
    a = evm_chain.accounts
    p, c = coins.pool.functions, coins.coin.functions
    lp_holders = [DEAD, *(a[u] for u in (ARTIST, *USERS))]
    with evm_chain.snapshot():
        seed_pool(evm_chain, coins, seed[0] * POOL_UNIT * 1000, seed[1] * POOL_UNIT)
        for op in ops:
            rc, re = p.getReserves().call()
            supply = p.totalSupply().call()
            kind, user = op[0], a[op[1]]
            if kind == "swap_eth":
                amount = op[2] * POOL_UNIT
                fn = p.swapExactEthForCoin(0, user, deadline(evm_chain))
                out = amount_out(amount, re, rc)
                if out == 0:
                    evm_chain.expect_revert(
                        fn, user, "InsufficientOutput(uint256,uint256)", value=amount
                    )
                    continue
                evm_chain.send(fn, user, gas=300_000, value=amount)
                assert p.getReserves().call() == [rc - out, re + amount]
            elif kind == "swap_coin":
                amount = op[2] * POOL_UNIT * 100
                fn = p.swapExactCoinForEth(amount, 0, user, deadline(evm_chain))
                out = amount_out(amount, rc, re)
                if out == 0:
                    evm_chain.expect_revert(fn, user, "InsufficientOutput(uint256,uint256)")
                    continue
                evm_chain.send(fn, user, gas=300_000)
                assert p.getReserves().call() == [rc + amount, re - out]
            elif kind == "add":
                coin_amount, eth_amount = op[2] * POOL_UNIT * 100, op[3] * POOL_UNIT
                fn = p.addLiquidity(coin_amount, 0, 0, user, deadline(evm_chain))
                try:
                    fn.call({"from": user, "gas": 400_000, "value": eth_amount})
                except Exception:  # too small to mint any LP at this price
                    evm_chain.expect_revert(
                        fn, user, "InsufficientLiquidityMinted()", value=eth_amount
                    )
                    continue
                evm_chain.send(fn, user, gas=400_000, value=eth_amount)
            else:
                lp = p.balanceOf(user).call() * op[2] // 100
                if lp == 0:
                    continue
                fn = p.removeLiquidity(lp, 0, 0, user, deadline(evm_chain))
                try:
                    fn.call({"from": user, "gas": 400_000})
                except Exception:  # a dust position worth 0 of one side
                    evm_chain.expect_revert(fn, user, "InsufficientLiquidityBurned()")
                    continue
                evm_chain.send(fn, user, gas=400_000)

            new_rc, new_re = p.getReserves().call()
            new_supply = p.totalSupply().call()
            if kind.startswith("swap"):
                assert new_rc * new_re >= rc * re
                assert new_supply == supply
            # k per LP share never decreases (fees and rounding accrue to the pool)
            assert new_rc * new_re * supply * supply >= rc * re * new_supply * new_supply
            assert evm_chain.balance(coins.pool.address) == new_re
            assert c.balanceOf(coins.pool.address).call() == new_rc
            assert sum(p.balanceOf(h).call() for h in lp_holders) == new_supply
            assert p.balanceOf(DEAD).call() == 1000


def deploy_reentrant_receiver(chain: EvmChain, target: str, calldata: bytes) -> str:
    """On every call it calls `target` with `calldata`, forwarding the value it received, then
    records `1 + success` in slot 0 and the first word of the return data in slot 1, and accepts."""
    size = len(calldata).to_bytes(2, "big")
    # fmt: off
    code: list[Any] = [
        0x61, size, ("push2", "data"), 0x60, 0, 0x39,  # CODECOPY(0, data, size)
        0x60, 0, 0x60, 0, 0x61, size, 0x60, 0, 0x34,  # ret 0,0; args 0,size; value CALLVALUE
        0x73, bytes.fromhex(target[2:]), 0x5A, 0xF1,  # PUSH20 target, GAS, CALL -> success
        0x60, 1, 0x01, 0x60, 0, 0x55,  # slot0 = success + 1
        0x3D, 0x60, 0, 0x61, b"\x02\x00", 0x3E,  # RETURNDATACOPY(0x200, 0, size)
        0x61, b"\x02\x00", 0x51, 0x60, 1, 0x55, 0x00,  # slot1 = mload(0x200); STOP
        ("label", "data"), calldata,
    ]
    # fmt: on
    return chain.deploy_runtime(chain.assemble(code))


def test_pool_is_non_reentrant(evm_chain: EvmChain, coins: ArtistCoins) -> None:
    a = evm_chain.accounts
    p = coins.pool.functions
    seed_pool(evm_chain, coins)
    far = deadline(evm_chain, 10**6)
    # paid ETH by the pool, the receiver tries to swap it straight back in
    reenter = bytes.fromhex(
        coins.pool.encode_abi("swapExactEthForCoin", args=[0, a[USERS[1]], far])[2:]
    )
    receiver = deploy_reentrant_receiver(evm_chain, coins.pool.address, reenter)
    user = a[USERS[0]]
    rc, re = p.getReserves().call()
    out = amount_out(100 * ETHER, rc, re)
    evm_chain.send(p.swapExactCoinForEth(100 * ETHER, 0, receiver, far), user, gas=500_000)
    storage = evm_chain.w3.eth.get_storage_at
    assert int.from_bytes(storage(receiver, 0), "big") == 1  # the re-entrant swap failed...
    selector = keccak(text="ReentrancyGuardReentrantCall()")[:4]
    assert bytes(storage(receiver, 1))[:4] == selector  # ...because of the guard
    assert evm_chain.balance(receiver) == out
    assert p.getReserves().call() == [rc + 100 * ETHER, re - out]
