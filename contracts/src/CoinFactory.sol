// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {ArtistCoin} from "./ArtistCoin.sol";
import {CoinStaking} from "./CoinStaking.sol";
import {CoinPool} from "./CoinPool.sol";

/// @title CoinFactory: creates each artist's ArtistCoin with its CoinStaking and CoinPool.
/// @notice One implementation of each is deployed by the constructor; createCoin deploys three
///         EIP-1167 clones (CREATE2, salt = the artist's address, so addresses are predictable)
///         and initialises them in the same transaction. One coin per artist.
contract CoinFactory is Ownable {
    struct Coin {
        address coin;
        address staking;
        address pool;
    }

    address public immutable coinImplementation;
    address public immutable stakingImplementation;
    address public immutable poolImplementation;
    mapping(address artist => Coin) private _coins;

    event CoinCreated(address indexed artist, address coin, address staking, address pool);

    error CoinExists(address artist);
    error ZeroAddress();

    constructor() Ownable(msg.sender) {
        coinImplementation = address(new ArtistCoin());
        stakingImplementation = address(new CoinStaking());
        poolImplementation = address(new CoinPool());
    }

    /// @notice Creates the artist's coin (whole `initialSupply` minted to the artist), its staking
    ///         contract (rewards distributor: the artist) and its coin/ETH pool.
    function createCoin(
        address artist,
        string calldata name,
        string calldata symbol,
        uint256 initialSupply
    ) external onlyOwner returns (address coin, address staking, address pool) {
        if (artist == address(0)) revert ZeroAddress();
        if (_coins[artist].coin != address(0)) revert CoinExists(artist);
        bytes32 salt = bytes32(uint256(uint160(artist)));
        coin = Clones.cloneDeterministic(coinImplementation, salt);
        staking = Clones.cloneDeterministic(stakingImplementation, salt);
        pool = Clones.cloneDeterministic(poolImplementation, salt);
        _coins[artist] = Coin(coin, staking, pool);
        ArtistCoin(coin).initialize(name, symbol, artist, initialSupply);
        CoinStaking(staking).initialize(coin, artist);
        CoinPool(pool).initialize(coin);
        emit CoinCreated(artist, coin, staking, pool);
    }

    /// @notice (0, 0, 0) when the artist has no coin.
    function coinOf(address artist)
        external
        view
        returns (address coin, address staking, address pool)
    {
        Coin memory c = _coins[artist];
        return (c.coin, c.staking, c.pool);
    }

    /// @notice The addresses createCoin(artist, ...) deploys (or deployed) to.
    function predictCoin(address artist)
        external
        view
        returns (address coin, address staking, address pool)
    {
        bytes32 salt = bytes32(uint256(uint160(artist)));
        coin = Clones.predictDeterministicAddress(coinImplementation, salt);
        staking = Clones.predictDeterministicAddress(stakingImplementation, salt);
        pool = Clones.predictDeterministicAddress(poolImplementation, salt);
    }
}
