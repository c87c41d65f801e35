// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

interface IMasterSharesView {
    function totalMinted() external view returns (uint256);
    function ownerOf(uint256 id) external view returns (address);
    function isApprovedForAll(address owner, address operator) external view returns (bool);
}

/// @title DividendVault: ETH dividends of one master, accounted per share token id.
/// @notice Accounting
///  * Every deposit is split equally over the shares minted at deposit time (ids 1..supply):
///    `perShare = (amount + dust) / supply`, in whole wei, and the remainder stays in `dust`, which
///    is carried into the next deposit. So at all times
///    `totalDeposited == totalClaimed + sum(claimable of every id) + dust`; no wei is ever lost.
///  * `cumulativePerShare` is the running sum of `perShare` (wei per share, unscaled: because the
///    remainder is carried explicitly, no fixed-point scale is needed).
///  * A share minted later only earns deposits made after its mint. Ids are sequential from 1 and
///    the supply seen by deposits never decreases, so a token's entitlement starts at the first
///    deposit whose supply covers its id. The vault stores one checkpoint per distinct supply
///    value `(supply, cumulativePerShare before that deposit)` and finds a token's start by binary
///    search: minting costs the vault nothing and needs no callback from MasterShares.
///  * What was paid is recorded per token id (`paidUpTo(id)`: the cumulativePerShare level up to
///    which the id was paid; two ids packed per storage slot), not per holder, so unclaimed
///    dividends travel with the token when it changes hands.
/// @dev Deployed as an EIP-1167 clone by MasterFactory; initialize() replaces the constructor.
///      ReentrancyGuard works in a clone: an unset guard slot (0) reads as "not entered".
contract DividendVault is ReentrancyGuard {
    using SafeCast for uint256;

    struct Checkpoint {
        uint64 supply; // shares minted when the deposit(s) of this checkpoint were made
        uint128 cumulativeBefore; // cumulativePerShare just before the first of them
    }

    // Hot state packed in two slots so a deposit writes few slots (first deposit ~100k gas).
    struct Accumulator {
        uint128 cumulativePerShare;
        uint96 dust; // < supply
        uint32 checkpointCount;
    }

    struct Totals {
        uint128 deposited;
        uint128 claimed;
    }

    address public shares;
    bytes32 public masterId;
    bool private _initialized;
    Accumulator private _acc;
    Totals private _totals;
    mapping(uint256 index => Checkpoint) private _checkpoints;
    // paidUpTo of two consecutive ids per slot (uint128 each): halves the cost of a big claim
    mapping(uint256 pair => uint256) private _paidUpToPacked;

    event DividendDeposited(bytes32 masterId, uint256 amount);
    event DividendClaimed(address indexed to, uint256 amount, uint256[] ids);

    error AlreadyInitialized();
    error ZeroAddress();
    error ZeroDeposit();
    error NoSharesMinted();
    error NotOwnerNorOperator(uint256 id, address caller);
    error PaymentFailed();

    constructor() {
        _initialized = true; // the implementation can never be initialised
    }

    function initialize(address shares_, bytes32 masterId_) external {
        if (_initialized) revert AlreadyInitialized();
        if (shares_ == address(0)) revert ZeroAddress();
        _initialized = true;
        shares = shares_;
        masterId = masterId_;
    }

    receive() external payable {
        _deposit();
    }

    /// @notice Deposits msg.value as a dividend for every share minted so far.
    function deposit() external payable {
        _deposit();
    }

    /// @notice Sum over all deposits of the wei credited to each share then minted (unscaled).
    function cumulativePerShare() public view returns (uint256) {
        return _acc.cumulativePerShare;
    }

    /// @notice Wei not attributable to any share because of rounding; carried into the next deposit.
    function dust() external view returns (uint256) {
        return _acc.dust;
    }

    function totalDeposited() external view returns (uint256) {
        return _totals.deposited;
    }

    function totalClaimed() external view returns (uint256) {
        return _totals.claimed;
    }

    function _deposit() private {
        if (msg.value == 0) revert ZeroDeposit();
        uint256 supply = IMasterSharesView(shares).totalMinted();
        if (supply == 0) revert NoSharesMinted();
        Accumulator memory acc = _acc;
        uint256 n = acc.checkpointCount;
        if (n == 0 || _checkpoints[n - 1].supply < supply) {
            _checkpoints[n] = Checkpoint(supply.toUint64(), acc.cumulativePerShare);
            acc.checkpointCount = (n + 1).toUint32();
        }
        uint256 pool = msg.value + acc.dust;
        uint256 perShare = pool / supply;
        acc.dust = uint96(pool - perShare * supply); // < supply < 2^64
        acc.cumulativePerShare = (acc.cumulativePerShare + perShare).toUint128();
        _acc = acc;
        _totals.deposited = (_totals.deposited + msg.value).toUint128();
        emit DividendDeposited(masterId, msg.value);
    }

    /// @notice Total claimable for `ids`; duplicate ids are counted once, unknown ids count 0.
    function claimable(uint256[] calldata ids) external view returns (uint256 total) {
        uint256 cumulative = _acc.cumulativePerShare;
        uint256 n = ids.length;
        for (uint256 i = 0; i < n; ++i) {
            uint256 id = ids[i];
            bool seen = false;
            for (uint256 j = 0; j < i; ++j) {
                if (ids[j] == id) {
                    seen = true;
                    break;
                }
            }
            if (!seen) total += _owed(id, cumulative);
        }
    }

    /// @notice Claimable of a single share.
    function claimableOf(uint256 id) external view returns (uint256) {
        return _owed(id, _acc.cumulativePerShare);
    }

    /// @notice Pays everything owed to `ids` to `to`. The caller must own every id or be an
    ///         approved operator (setApprovalForAll) of its owner. Duplicate ids are paid once.
    function claim(uint256[] calldata ids, address to) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        IMasterSharesView s = IMasterSharesView(shares);
        uint256 cumulative = _acc.cumulativePerShare;
        uint256 total = 0;
        uint256 n = ids.length;
        for (uint256 i = 0; i < n; ++i) {
            uint256 id = ids[i];
            address holder = s.ownerOf(id); // reverts for an id that does not exist
            if (holder != msg.sender && !s.isApprovedForAll(holder, msg.sender)) {
                revert NotOwnerNorOperator(id, msg.sender);
            }
            uint256 owed = _owed(id, cumulative);
            if (owed != 0) {
                _setPaidUpTo(id, cumulative); // a duplicate id now owes 0
                total += owed;
            }
        }
        _totals.claimed += total.toUint128();
        emit DividendClaimed(to, total, ids);
        if (total != 0) {
            (bool ok,) = to.call{value: total}("");
            if (!ok) revert PaymentFailed();
        }
    }

    /// @notice Number of supply checkpoints (one per distinct supply seen by a deposit).
    function checkpointCount() external view returns (uint256) {
        return _acc.checkpointCount;
    }

    function checkpointAt(uint256 index)
        external
        view
        returns (uint256 supply, uint256 cumulativeBefore)
    {
        Checkpoint memory c = _checkpoints[index];
        return (c.supply, c.cumulativeBefore);
    }

    /// @notice The cumulativePerShare level from which share `id` earns (its first covering
    ///         deposit); cumulativePerShare itself when no deposit covers it yet.
    function entitlementStart(uint256 id) public view returns (uint256) {
        // lowest k with _checkpoints[k].supply >= id (supplies strictly increase with k)
        uint256 count = _acc.checkpointCount;
        uint256 lo = 0;
        uint256 hi = count;
        while (lo < hi) {
            uint256 mid = (lo + hi) >> 1;
            if (_checkpoints[mid].supply < id) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (lo == count) return _acc.cumulativePerShare;
        return _checkpoints[lo].cumulativeBefore;
    }

    /// @notice The cumulativePerShare level up to which share `id` has been paid (0: never claimed).
    function paidUpTo(uint256 id) public view returns (uint256) {
        uint256 word = _paidUpToPacked[id >> 1];
        return id & 1 == 0 ? word & type(uint128).max : word >> 128;
    }

    function _setPaidUpTo(uint256 id, uint256 level) private {
        uint256 key = id >> 1;
        uint256 word = _paidUpToPacked[key];
        if (id & 1 == 0) {
            word = (word & ~uint256(type(uint128).max)) | level;
        } else {
            word = (word & type(uint128).max) | (level << 128);
        }
        _paidUpToPacked[key] = word;
    }

    function _owed(uint256 id, uint256 cumulative) private view returns (uint256) {
        if (id == 0) return 0;
        uint256 start = entitlementStart(id);
        uint256 paid = paidUpTo(id);
        if (paid > start) start = paid;
        return cumulative - start;
    }
}
