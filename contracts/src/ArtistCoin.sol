// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title ArtistCoin: an artist's ERC-20 (18 decimals); the whole supply goes to the artist.
/// @notice Deployed by CoinFactory as an EIP-1167 clone and initialised in the same transaction.
///         OZ 5's ERC20 keeps name/symbol in constructor-set storage, which a clone never runs,
///         so this contract stores its own and overrides name()/symbol(). There is no mint after
///         initialisation: totalSupply is fixed.
contract ArtistCoin is ERC20 {
    address public artist;
    string private _coinName;
    string private _coinSymbol;
    bool private _initialized;

    error AlreadyInitialized();
    error ZeroAddress();
    error ZeroSupply();

    constructor() ERC20("", "") {
        _initialized = true; // the implementation can never be initialised
    }

    function initialize(
        string calldata name_,
        string calldata symbol_,
        address artist_,
        uint256 initialSupply
    ) external {
        if (_initialized) revert AlreadyInitialized();
        if (artist_ == address(0)) revert ZeroAddress();
        if (initialSupply == 0) revert ZeroSupply();
        _initialized = true;
        artist = artist_;
        _coinName = name_;
        _coinSymbol = symbol_;
        _mint(artist_, initialSupply);
    }

    function name() public view override returns (string memory) {
        return _coinName;
    }

    function symbol() public view override returns (string memory) {
        return _coinSymbol;
    }
}
