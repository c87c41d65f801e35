// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title CoinPool: constant-product ArtistCoin/ETH pool; the pool is its own LP token.
/// @notice The maths follow Uniswap V2: a 0.3 % fee stays in the reserves, the first deposit
///         mints sqrt(coin * eth) LP of which MINIMUM_LIQUIDITY is locked forever (minted to
///         0x…dEaD, since OZ's ERC20 refuses address 0), later deposits mint pro rata at the
///         current price. Unlike a V2 pair it is used directly (no router): it pulls the coin with
///         transferFrom, takes ETH as msg.value, enforces slippage minimums and deadlines, and
///         tracks its reserves in storage (coins or ETH sent to it otherwise are ignored).
///         reserveCoin * reserveEth never decreases across swaps.
/// @dev Deployed as an EIP-1167 clone by CoinFactory; initialize() replaces the constructor, and
///      name()/symbol() are constants because OZ 5's ERC20 sets them in its constructor.
contract CoinPool is ERC20, ReentrancyGuard {
    using SafeERC20 for IERC20;

    uint256 public constant MINIMUM_LIQUIDITY = 1000;
    address public constant LOCKED_LIQUIDITY_HOLDER = 0x000000000000000000000000000000000000dEaD;

    IERC20 private _coin;
    uint256 private _reserveCoin;
    uint256 private _reserveEth;
    bool private _initialized;

    event LiquidityAdded(
        address indexed provider, uint256 coinAmount, uint256 ethAmount, uint256 liquidity
    );
    event LiquidityRemoved(
        address indexed provider, uint256 coinAmount, uint256 ethAmount, uint256 liquidity
    );
    event Swap(
        address indexed sender,
        bool ethIn,
        uint256 amountIn,
        uint256 amountOut,
        address indexed to
    );

    error AlreadyInitialized();
    error ZeroAddress();
    error Expired(uint256 deadline, uint256 timestamp);
    error ZeroAmount();
    error InsufficientLiquidity();
    error InsufficientLiquidityMinted();
    error InsufficientLiquidityBurned();
    error SlippageCoin(uint256 amount, uint256 minimum);
    error SlippageEth(uint256 amount, uint256 minimum);
    error InsufficientOutput(uint256 amountOut, uint256 minimum);
    error InvariantViolated();

    modifier ensure(uint256 deadline) {
        if (block.timestamp > deadline) revert Expired(deadline, block.timestamp);
        _;
    }

    constructor() ERC20("", "") {
        _initialized = true; // the implementation can never be initialised
    }

    function initialize(address coin_) external {
        if (_initialized) revert AlreadyInitialized();
        if (coin_ == address(0)) revert ZeroAddress();
        _initialized = true;
        _coin = IERC20(coin_);
    }

    function name() public pure override returns (string memory) {
        return "AudiFi LP";
    }

    function symbol() public pure override returns (string memory) {
        return "AFLP";
    }

    function coin() external view returns (address) {
        return address(_coin);
    }

    function getReserves() external view returns (uint256 reserveCoin, uint256 reserveEth) {
        return (_reserveCoin, _reserveEth);
    }

    /// @notice Output of a swap of `amountIn` against the reserves, after the 0.3 % fee.
    function getAmountOut(uint256 amountIn, uint256 reserveIn, uint256 reserveOut)
        public
        pure
        returns (uint256)
    {
        if (amountIn == 0) revert ZeroAmount();
        if (reserveIn == 0 || reserveOut == 0) revert InsufficientLiquidity();
        uint256 amountInWithFee = amountIn * 997;
        return amountInWithFee * reserveOut / (reserveIn * 1000 + amountInWithFee);
    }

    // --- liquidity -----------------------------------------------------------------------------

    /// @notice Adds up to `coinAmount` coin and msg.value ETH at the current price; the side in
    ///         excess is not taken (excess ETH is refunded to the caller). Mints LP to `to`.
    function addLiquidity(
        uint256 coinAmount,
        uint256 minCoin,
        uint256 minEth,
        address to,
        uint256 deadline
    ) external payable nonReentrant ensure(deadline) returns (uint256 liquidity) {
        if (to == address(0)) revert ZeroAddress();
        uint256 ethAmount = msg.value;
        if (coinAmount == 0 || ethAmount == 0) revert ZeroAmount();
        uint256 rc = _reserveCoin;
        uint256 re = _reserveEth;
        uint256 supply = totalSupply();
        uint256 coinUsed;
        uint256 ethUsed;
        if (supply == 0) {
            coinUsed = coinAmount;
            ethUsed = ethAmount;
            uint256 root = Math.sqrt(coinUsed * ethUsed);
            if (root <= MINIMUM_LIQUIDITY) revert InsufficientLiquidityMinted();
            liquidity = root - MINIMUM_LIQUIDITY;
            _mint(LOCKED_LIQUIDITY_HOLDER, MINIMUM_LIQUIDITY);
        } else {
            uint256 coinOptimal = ethAmount * rc / re;
            if (coinOptimal <= coinAmount) {
                coinUsed = coinOptimal;
                ethUsed = ethAmount;
            } else {
                coinUsed = coinAmount;
                ethUsed = coinAmount * re / rc; // <= ethAmount
            }
            liquidity = Math.min(coinUsed * supply / rc, ethUsed * supply / re);
        }
        if (coinUsed < minCoin) revert SlippageCoin(coinUsed, minCoin);
        if (ethUsed < minEth) revert SlippageEth(ethUsed, minEth);
        if (liquidity == 0) revert InsufficientLiquidityMinted();

        _reserveCoin = rc + coinUsed;
        _reserveEth = re + ethUsed;
        _mint(to, liquidity);
        _coin.safeTransferFrom(msg.sender, address(this), coinUsed);
        emit LiquidityAdded(msg.sender, coinUsed, ethUsed, liquidity);
        if (ethAmount > ethUsed) Address.sendValue(payable(msg.sender), ethAmount - ethUsed);
    }

    /// @notice Burns `liquidity` LP of the caller and sends its share of both reserves to `to`.
    function removeLiquidity(
        uint256 liquidity,
        uint256 minCoin,
        uint256 minEth,
        address to,
        uint256 deadline
    ) external nonReentrant ensure(deadline) returns (uint256 coinAmount, uint256 ethAmount) {
        if (to == address(0)) revert ZeroAddress();
        if (liquidity == 0) revert ZeroAmount();
        uint256 supply = totalSupply();
        uint256 rc = _reserveCoin;
        uint256 re = _reserveEth;
        coinAmount = liquidity * rc / supply;
        ethAmount = liquidity * re / supply;
        if (coinAmount == 0 || ethAmount == 0) revert InsufficientLiquidityBurned();
        if (coinAmount < minCoin) revert SlippageCoin(coinAmount, minCoin);
        if (ethAmount < minEth) revert SlippageEth(ethAmount, minEth);

        _burn(msg.sender, liquidity);
        _reserveCoin = rc - coinAmount;
        _reserveEth = re - ethAmount;
        _coin.safeTransfer(to, coinAmount);
        emit LiquidityRemoved(msg.sender, coinAmount, ethAmount, liquidity);
        Address.sendValue(payable(to), ethAmount);
    }

    // --- swaps ---------------------------------------------------------------------------------

    function swapExactEthForCoin(uint256 minCoinOut, address to, uint256 deadline)
        external
        payable
        nonReentrant
        ensure(deadline)
        returns (uint256 out)
    {
        if (to == address(0)) revert ZeroAddress();
        uint256 rc = _reserveCoin;
        uint256 re = _reserveEth;
        out = getAmountOut(msg.value, re, rc);
        if (out == 0 || out < minCoinOut) revert InsufficientOutput(out, minCoinOut);
        _commitSwap(rc - out, re + msg.value, rc, re);
        _coin.safeTransfer(to, out);
        emit Swap(msg.sender, true, msg.value, out, to);
    }

    function swapExactCoinForEth(uint256 coinIn, uint256 minEthOut, address to, uint256 deadline)
        external
        nonReentrant
        ensure(deadline)
        returns (uint256 out)
    {
        if (to == address(0)) revert ZeroAddress();
        uint256 rc = _reserveCoin;
        uint256 re = _reserveEth;
        out = getAmountOut(coinIn, rc, re);
        if (out == 0 || out < minEthOut) revert InsufficientOutput(out, minEthOut);
        _commitSwap(rc + coinIn, re - out, rc, re);
        _coin.safeTransferFrom(msg.sender, address(this), coinIn);
        emit Swap(msg.sender, false, coinIn, out, to);
        Address.sendValue(payable(to), out);
    }

    function _commitSwap(uint256 newCoin, uint256 newEth, uint256 oldCoin, uint256 oldEth)
        private
    {
        // guaranteed by getAmountOut (out < reserveOut, k grows by the fee); checked anyway
        if (newCoin == 0 || newEth == 0 || newCoin * newEth < oldCoin * oldEth) {
            revert InvariantViolated();
        }
        _reserveCoin = newCoin;
        _reserveEth = newEth;
    }
}
