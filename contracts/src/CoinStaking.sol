// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title CoinStaking: stake an ArtistCoin, earn the same coin funded by the artist.
/// @notice rewardPerToken accrual in the style of Synthetix StakingRewards: a reward period pays
///         `rewardRate` coin per second, shared pro rata among stakers; each account's `earned`
///         is its stake times the growth of rewardPerToken since it last settled.
///  * Rewards are funded explicitly: notifyRewardAmount pulls the coin from the artist.
///  * Staked coin and reward coin are the same token; the contract keeps them apart in its books:
///    balance == totalStaked + (rewards earned, unpaid) + (rewards still to stream) +
///    unallocatedRewards + rounding dust.
///  * Time with nothing staked, and the remainder of amount / duration, is not lost: it is counted
///    in unallocatedRewards and rolled into the next notifyRewardAmount.
///  * There is no pause: unstake, claimRewards and exit always work.
/// @dev Deployed as an EIP-1167 clone by CoinFactory; initialize() replaces the constructor.
contract CoinStaking is ReentrancyGuard {
    using SafeERC20 for IERC20;

    uint256 private constant PRECISION = 1e18;

    IERC20 private _token;
    address public artist;
    uint256 public rewardRate;
    uint256 public periodFinish;
    uint256 public lastUpdateTime;
    uint256 public rewardPerTokenStored;
    uint256 public totalStaked;
    uint256 private _unallocated; // settled part of unallocatedRewards()
    bool private _initialized;
    mapping(address account => uint256) private _staked;
    mapping(address account => uint256) public userRewardPerTokenPaid;
    mapping(address account => uint256) public rewards;

    event Staked(address indexed user, uint256 amount);
    event Unstaked(address indexed user, uint256 amount);
    event RewardPaid(address indexed user, uint256 reward);
    event RewardAdded(uint256 reward, uint256 duration);

    error AlreadyInitialized();
    error ZeroAddress();
    error ZeroAmount();
    error InsufficientStake(uint256 staked, uint256 requested);
    error OnlyArtist();
    error InvalidDuration();
    error RewardTooSmall();

    constructor() {
        _initialized = true; // the implementation can never be initialised
    }

    function initialize(address token_, address artist_) external {
        if (_initialized) revert AlreadyInitialized();
        if (token_ == address(0) || artist_ == address(0)) revert ZeroAddress();
        _initialized = true;
        _token = IERC20(token_);
        artist = artist_;
    }

    // --- views ---------------------------------------------------------------------------------

    function stakingToken() external view returns (address) {
        return address(_token);
    }

    /// @notice The reward token (the staking token itself).
    function rewardsToken() external view returns (address) {
        return address(_token);
    }

    function stakedOf(address account) external view returns (uint256) {
        return _staked[account];
    }

    function lastTimeRewardApplicable() public view returns (uint256) {
        return block.timestamp < periodFinish ? block.timestamp : periodFinish;
    }

    /// @notice Accumulated reward per staked token, scaled by 1e18.
    function rewardPerToken() public view returns (uint256) {
        uint256 staked = totalStaked;
        if (staked == 0) return rewardPerTokenStored;
        return rewardPerTokenStored
            + (lastTimeRewardApplicable() - lastUpdateTime) * rewardRate * PRECISION / staked;
    }

    function earned(address account) public view returns (uint256) {
        return _staked[account] * (rewardPerToken() - userRewardPerTokenPaid[account]) / PRECISION
            + rewards[account];
    }

    /// @notice Reward coin held but not promised to anyone: what streamed while nothing was staked
    ///         and the rounding remainder of amount / duration. Rolled into the next reward period.
    function unallocatedRewards() public view returns (uint256) {
        uint256 applicable = lastTimeRewardApplicable();
        if (totalStaked == 0 && applicable > lastUpdateTime) {
            return _unallocated + (applicable - lastUpdateTime) * rewardRate;
        }
        return _unallocated;
    }

    /// @notice Rewards of the current period not streamed yet.
    function pendingRewards() external view returns (uint256) {
        uint256 t = block.timestamp;
        return t < periodFinish ? (periodFinish - t) * rewardRate : 0;
    }

    // --- staking -------------------------------------------------------------------------------

    function stake(uint256 amount) external nonReentrant {
        _settle(msg.sender);
        if (amount == 0) revert ZeroAmount();
        totalStaked += amount;
        _staked[msg.sender] += amount;
        _token.safeTransferFrom(msg.sender, address(this), amount);
        emit Staked(msg.sender, amount);
    }

    /// @notice Withdraws staked coin. Never pausable.
    function unstake(uint256 amount) external nonReentrant {
        _settle(msg.sender);
        _unstake(amount);
    }

    function claimRewards() external nonReentrant {
        _settle(msg.sender);
        _payReward();
    }

    /// @notice Unstakes everything and claims the rewards.
    function exit() external nonReentrant {
        _settle(msg.sender);
        uint256 staked = _staked[msg.sender];
        if (staked != 0) _unstake(staked);
        _payReward();
    }

    // --- rewards -------------------------------------------------------------------------------

    /// @notice Starts (or extends) a reward period of `duration` seconds from now paying `amount`
    ///         plus what the current period has not streamed yet plus unallocatedRewards.
    ///         Only the artist; pulls `amount` coin with transferFrom (approve this contract first).
    function notifyRewardAmount(uint256 amount, uint256 duration) external nonReentrant {
        if (msg.sender != artist) revert OnlyArtist();
        if (duration == 0) revert InvalidDuration();
        if (amount == 0) revert ZeroAmount();
        _settle(address(0));
        _token.safeTransferFrom(msg.sender, address(this), amount);

        uint256 total = amount + _unallocated;
        uint256 t = block.timestamp;
        if (t < periodFinish) total += (periodFinish - t) * rewardRate;
        uint256 rate = total / duration;
        if (rate == 0) revert RewardTooSmall();
        rewardRate = rate;
        _unallocated = total - rate * duration;
        lastUpdateTime = t;
        periodFinish = t + duration;
        emit RewardAdded(amount, duration);
    }

    // --- internals -----------------------------------------------------------------------------

    function _settle(address account) private {
        uint256 applicable = lastTimeRewardApplicable();
        if (totalStaked == 0) {
            // nobody to pay for this stretch: keep it for the next reward period
            _unallocated = unallocatedRewards();
        } else {
            rewardPerTokenStored = rewardPerToken();
        }
        lastUpdateTime = applicable;
        if (account != address(0)) {
            rewards[account] = earned(account);
            userRewardPerTokenPaid[account] = rewardPerTokenStored;
        }
    }

    function _unstake(uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        uint256 staked = _staked[msg.sender];
        if (amount > staked) revert InsufficientStake(staked, amount);
        _staked[msg.sender] = staked - amount;
        totalStaked -= amount;
        _token.safeTransfer(msg.sender, amount);
        emit Unstaked(msg.sender, amount);
    }

    function _payReward() private {
        uint256 reward = rewards[msg.sender];
        if (reward != 0) {
            rewards[msg.sender] = 0;
            _token.safeTransfer(msg.sender, reward);
            emit RewardPaid(msg.sender, reward);
        }
    }
}
